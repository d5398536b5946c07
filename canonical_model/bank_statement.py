"""Canonical bank statement (银行对账单): one shape for MT940/942, camt.05x, OFX, BAI2 and Chinese exports.

Why one model: reconciliation (bank vs books) and archiving (其他会计资料/银行对账单, 10 years) must not care
which dialect the bank spoke. Amounts are ``Decimal`` and signed from the account holder's view (debit
negative); a float never touches them. Every entry remembers where it came from (file + line/element)
so a refusal or a reconciliation difference can point at the byte that caused it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Set
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# ISO 4217 List One (current codes, 2025 edition incl. XCG, ZWG, VED, SLE).
ISO_4217_CURRENT: frozenset[str] = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BOV",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHE",
        "CHF",
        "CHW",
        "CLF",
        "CLP",
        "CNY",
        "COP",
        "COU",
        "CRC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MXV",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "USN",
        "UYI",
        "UYU",
        "UYW",
        "UZS",
        "VED",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XAG",
        "XAU",
        "XBA",
        "XBB",
        "XBC",
        "XBD",
        "XCD",
        "XCG",
        "XDR",
        "XOF",
        "XPD",
        "XPF",
        "XPT",
        "XSU",
        "XTS",
        "XUA",
        "XXX",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
    ]
)

# ISO 4217 List Three (historic denominations). Accepted because an archive keeps statements for decades:
# a 2001 German statement in DEM is genuine, not malformed.
ISO_4217_HISTORIC: frozenset[str] = frozenset(
    [
        "ADP",
        "AFA",
        "ALK",
        "ANG",
        "AOK",
        "AON",
        "AOR",
        "ARA",
        "ARP",
        "ATS",
        "AZM",
        "BAD",
        "BEC",
        "BEF",
        "BEL",
        "BGL",
        "BOP",
        "BRB",
        "BRC",
        "BRE",
        "BRN",
        "BRR",
        "BUK",
        "BYB",
        "BYR",
        "CSD",
        "CSK",
        "CUC",
        "CYP",
        "DDM",
        "DEM",
        "ECS",
        "ECV",
        "EEK",
        "ESA",
        "ESB",
        "ESP",
        "FIM",
        "FRF",
        "GEK",
        "GHC",
        "GRD",
        "GWP",
        "HRD",
        "HRK",
        "IEP",
        "ILP",
        "ILR",
        "ISJ",
        "ITL",
        "LTL",
        "LTT",
        "LUC",
        "LUF",
        "LUL",
        "LVL",
        "LVR",
        "MGF",
        "MLF",
        "MRO",
        "MTL",
        "MTP",
        "MXP",
        "MZE",
        "MZM",
        "NIC",
        "NLG",
        "PEI",
        "PES",
        "PLZ",
        "PTE",
        "RHD",
        "ROL",
        "RUR",
        "SDD",
        "SDP",
        "SIT",
        "SKK",
        "SLL",
        "SRG",
        "STD",
        "SUR",
        "TJR",
        "TMM",
        "TPE",
        "TRL",
        "UAK",
        "UGS",
        "UYP",
        "VEB",
        "VEF",
        "VNN",
        "XEU",
        "XFO",
        "XFU",
        "XRE",
        "YDD",
        "YUD",
        "YUM",
        "YUN",
        "ZAL",
        "ZMK",
        "ZRN",
        "ZRZ",
        "ZWC",
        "ZWD",
        "ZWL",
        "ZWN",
        "ZWR",
    ]
)

# Minor-unit exponent where it is not 2 (needed by formats that carry amounts in minor units, e.g. BAI2).
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


def is_iso_currency(code: str) -> bool:
    """True for a current or historic ISO 4217 alphabetic code."""
    return code in ISO_4217_CURRENT or code in ISO_4217_HISTORIC


def minor_units(code: str) -> int:
    """Number of decimals of the currency's minor unit (2 unless ISO says otherwise)."""
    return MINOR_UNITS.get(code, 2)


_M = TypeVar("_M", bound=BaseModel)
_new = object.__new__
_setattr = object.__setattr__


def from_validated(cls: type[_M], values: dict[str, Any], fields_set: Set[str]) -> _M:
    """A model instance from values a parser has already checked, without pydantic re-validating them.

    Why: the statement parsers check every amount, date and currency themselves (they must, to say where a
    file is wrong); validating the same values again costs more than parsing a large file. ``values`` must
    hold every field of ``cls`` in declaration order with correctly typed values (mutable defaults fresh),
    and ``fields_set`` the names the caller set explicitly: the result is then indistinguishable from
    ``cls(**explicit_values)`` (tests/bank/test_fast_models.py checks this). ``model_construct`` is no
    substitute: it fills defaults in Python per field and is ~20x slower than validating.
    """
    m = _new(cls)
    _setattr(m, "__dict__", values)
    _setattr(m, "__pydantic_fields_set__", set(fields_set))
    _setattr(m, "__pydantic_extra__", None)
    _setattr(m, "__pydantic_private__", None)
    return m


def _check_currency(value: str) -> str:
    if not is_iso_currency(value):
        raise ValueError(f"currency {value!r} is not an ISO 4217 code")
    return value


Currency = Annotated[str, AfterValidator(_check_currency)]


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


BalanceType = Literal[
    "opening",  # OPBD / :60F: — booked balance at the start of the statement
    "interim_opening",  # :60M: — carried over from the previous page of the same statement
    "closing",  # CLBD / :62F:
    "interim_closing",  # :62M:
    "interim",  # ITBD (intraday booked)
    "available",  # CLAV / :64:
    "opening_available",  # OPAV
    "forward_available",  # FWAV / :65:
    "interim_available",  # ITAV
    "previously_closed",  # PRCD
    "information",  # INFO
    "expected",  # XPCD
    "ledger",  # OFX LEDGERBAL / BAI2 010 etc.
    "other",
]


class Balance(BaseModel):
    """A booked or available balance, signed (debit/overdrawn negative)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: BalanceType
    amount: Decimal
    currency: Currency
    date: dt.date | None = None
    code: str | None = Field(default=None, description="the bank's own code, e.g. OPBD, 60F, 010")


class TransactionDetail(BaseModel):
    """One underlying transaction of an entry (camt ``TxDtls``); a batch entry has several."""

    model_config = ConfigDict(extra="forbid")

    amount: Decimal | None = None
    currency: Currency | None = None
    end_to_end_id: str | None = None
    mandate_id: str | None = None
    instruction_id: str | None = None
    transaction_id: str | None = None
    bank_reference: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    counterparty_bank: str | None = None
    counterparty_id: str | None = None
    remittance: str | None = None
    creditor_reference: str | None = None
    bank_transaction_code: str | None = None


class StatementEntry(BaseModel):
    """One booked line of a statement (MT940 :61:+:86:, camt Ntry, OFX STMTTRN, BAI2 16, a CSV row)."""

    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(description="signed: credit positive, debit negative")
    currency: Currency
    booking_date: dt.date | None = None
    value_date: dt.date | None = None
    booking_time: dt.datetime | None = None
    reversal: bool = False
    status: Literal["booked", "pending", "info"] = "booked"
    bank_reference: str | None = None
    customer_reference: str | None = None
    end_to_end_id: str | None = None
    mandate_id: str | None = None
    creditor_id: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    counterparty_bank: str | None = None
    remittance: str | None = None
    bank_transaction_code: str | None = None
    transaction_type: str | None = None
    balance_after: Decimal | None = Field(
        default=None, description="running balance (余额) if the bank gives it"
    )
    details: list[TransactionDetail] = Field(default_factory=list)
    extra: dict[str, str] = Field(default_factory=dict)
    source: str
    position: str = Field(
        description="where in the source file, e.g. 'line 12' or 'Stmt[1]/Ntry[3] (line 40)'"
    )

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON: decimals as strings, dates ISO, no float anywhere."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Decimal):
                value = _dec(value)
            elif isinstance(value, dt.date | dt.datetime):
                value = _iso(value)
            elif name == "details":
                value = [
                    {k: (_dec(v) if isinstance(v, Decimal) else v) for k, v in d.model_dump().items()}
                    for d in value
                ]
            out[name] = value
        return out


class BankStatement(BaseModel):
    """One statement/report/notification for one account, as the bank booked it."""

    model_config = ConfigDict(extra="forbid")

    format: str = Field(description="e.g. mt940, mt942, camt.053.001.02, ofx, bai2, cn-csv:icbc")
    source: str
    position: str
    account: str
    currency: Currency
    message_id: str | None = None
    statement_id: str | None = None
    statement_number: str | None = None
    sequence_number: str | None = None
    electronic_sequence: str | None = None
    legal_sequence: str | None = None
    created_at: dt.datetime | None = None
    period_from: dt.datetime | None = None
    period_to: dt.datetime | None = None
    account_owner: str | None = None
    account_bank: str | None = None
    opening_balance: Balance | None = None
    closing_balance: Balance | None = None
    balances: list[Balance] = Field(default_factory=list, description="every balance the file carries")
    entries: list[StatementEntry] = Field(default_factory=list)
    declared_totals: dict[str, str] = Field(
        default_factory=dict,
        description="control totals stated by the file (MT942 :90D:/:90C:, BAI2 trailers) for the check",
    )
    info: str | None = None
    balance_check: str = "not checked"

    @property
    def is_intraday(self) -> bool:
        return self.format.startswith(("mt942", "camt.052"))

    def to_json_dict(self) -> dict[str, Any]:
        """The CLI shape: balances flattened to signed decimal strings, entries as plain JSON."""
        ob, cb = self.opening_balance, self.closing_balance
        return {
            "format": self.format,
            "source": self.source,
            "position": self.position,
            "account": self.account,
            "currency": self.currency,
            "message_id": self.message_id,
            "statement_id": self.statement_id,
            "statement_number": self.statement_number,
            "sequence_number": self.sequence_number,
            "electronic_sequence": self.electronic_sequence,
            "legal_sequence": self.legal_sequence,
            "created_at": _iso(self.created_at),
            "period_from": _iso(self.period_from),
            "period_to": _iso(self.period_to),
            "account_owner": self.account_owner,
            "account_bank": self.account_bank,
            "opening_balance": _dec(ob.amount) if ob else None,
            "opening_balance_currency": ob.currency if ob else None,
            "opening_balance_date": _iso(ob.date) if ob else None,
            "opening_balance_type": ob.type if ob else None,
            "closing_balance": _dec(cb.amount) if cb else None,
            "closing_balance_currency": cb.currency if cb else None,
            "closing_balance_date": _iso(cb.date) if cb else None,
            "closing_balance_type": cb.type if cb else None,
            "balances": [
                {
                    "type": b.type,
                    "code": b.code,
                    "amount": _dec(b.amount),
                    "currency": b.currency,
                    "date": _iso(b.date),
                }
                for b in self.balances
            ],
            "declared_totals": self.declared_totals,
            "info": self.info,
            "balance_check": self.balance_check,
            "entry_count": len(self.entries),
            "entries": [e.to_json_dict() for e in self.entries],
        }
