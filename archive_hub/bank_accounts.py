"""The bank accounts the books keep a 银行存款 sub-account for (config/bank_accounts.yaml): what
`bank reconcile` and the reconcile_bank DAG set the archived statements against.

Not a source: an account names a ledger 科目, the source whose vouchers are the books, and the 日记账
opening balance the vouchers do not carry (the 总账 does). ARCHIVE_HUB_BANK_ACCOUNTS overrides the path.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archive_hub.settings import Settings
from connectors.errors import ConfigError


class BankAccount(BaseModel):
    """One bank account the books keep a 银行存款 sub-account for (config/bank_accounts.yaml)."""

    model_config = ConfigDict(extra="forbid")

    account: str = Field(min_length=1)  # as the statements name it (IBAN, 账号)
    name: str
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    ledger_account: str = Field(min_length=1)  # 科目编码 of the account in the books, e.g. 1002.01
    books: str  # the source whose archived vouchers are the books
    opening_date: dt.date  # the balances below are those at the start of this day
    opening_balance: Decimal  # 银行存款日记账 balance then (the 总账 carries it; vouchers do not)
    match_days: int = Field(default=10, ge=0, le=92)
    stale_days: int = Field(default=30, ge=1)


def load_bank_accounts(settings: Settings | None = None) -> list[BankAccount]:
    settings = settings or Settings.from_env()
    path = settings.bank_accounts_file
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("bank_accounts", str(path), f"cannot read: {exc}") from None
    items = doc.get("accounts") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ConfigError("bank_accounts", "accounts", f"a list of accounts is required (in {path})")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(BankAccount.model_validate(item))
        except ValidationError as exc:  # every fault at once: a misspelt key is both missing and unknown
            faults = [(".".join(str(p) for p in ("accounts", i, *e["loc"])), e["msg"]) for e in exc.errors()]
            also = "".join(f"; {where}: {msg}" for where, msg in faults[1:])
            raise ConfigError("bank_accounts", faults[0][0], f"{faults[0][1]}{also} (in {path})") from None
    return out
