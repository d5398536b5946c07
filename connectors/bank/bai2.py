"""BAI2 (Cash Management Balance Reporting Specification, version 2), with its control totals checked.

Why the trailers matter: BAI2 is the one format that says how much it contains. Every account trailer (49),
group trailer (98) and file trailer (99) states the sum of the amounts and the number of records below it;
a file whose trailers disagree with its content was cut or altered in transit and is refused.

Records: 01 file header, 02 group header, 03 account, 16 transaction detail, 88 continuation, 49 account
trailer, 98 group trailer, 99 file trailer. Amounts are in minor units without a decimal point
(implied decimals per ISO 4217). Type codes 100–399 are credits, 400–699 debits; 010/015 are the
opening/closing ledger balances.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

from canonical_model.bank_statement import (
    Balance,
    BankStatement,
    StatementEntry,
    is_iso_currency,
    minor_units,
)
from connectors.bank import checks
from connectors.bank.errors import StatementEncodingError, StatementFormatError, StatementValueError

_AMT_RE = re.compile(r"[+-]?\d+")
_SUMMARY = {
    "010": "opening",
    "015": "closing",
    "040": "opening_available",
    "045": "available",
    "050": "forward_available",
}


def sniff(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf\r\n ")[:3] == b"01,"


@dataclass
class _Rec:
    code: str
    fields: list[str]
    line: int
    amounts: list[int] = field(default_factory=list)


def _records(text: str, source: str) -> list[_Rec]:
    """Logical records: 88 continuations joined to their record; the trailing '/' removed."""
    out: list[_Rec] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip()
        if not line:
            continue
        code, _, rest = line.partition(",")
        if not re.fullmatch(r"\d\d", code):
            raise StatementFormatError(
                source, f"line {lineno}", f"record {line[:20]!r} has no 2-digit record code"
            )
        body = rest[:-1] if rest.endswith("/") else rest
        if code == "88":
            if not out:
                raise StatementFormatError(
                    source, f"line {lineno}", "88 continuation with no record to continue"
                )
            out[-1].fields.extend(body.split(","))
            out[-1].amounts.append(0)  # counted as a record by the trailers
            continue
        out.append(_Rec(code, body.split(","), lineno))
    return out


def _int(raw: str, source: str, where: str, what: str) -> int:
    raw = raw.strip()
    if "." in raw or "," in raw:
        raise StatementValueError(
            source, where, f"{what} {raw!r} has a decimal separator; BAI2 amounts are whole minor units"
        )
    if raw == "":
        return 0
    if not _AMT_RE.fullmatch(raw):
        raise StatementValueError(source, where, f"{what} {raw!r} is not a whole number")
    return int(raw)


def _date(raw: str, source: str, where: str) -> dt.date:
    try:
        return dt.date(2000 + int(raw[0:2]), int(raw[2:4]), int(raw[4:6]))
    except (ValueError, IndexError):
        raise StatementValueError(source, where, f"date {raw!r} is not YYMMDD") from None


def _funds_skip(fields: list[str], i: int, source: str, where: str) -> int:
    """Index after the funds-type subfields that start at ``fields[i]``."""
    ft = fields[i].strip() if i < len(fields) else ""
    i += 1
    if ft == "V":
        return i + 2
    if ft == "S":
        return i + 3
    if ft == "D":
        n = _int(fields[i], source, where, "distribution count")
        return i + 1 + 2 * n
    return i


def parse(data: bytes, *, source: str) -> list[BankStatement]:
    """Every account (03…49) of every group of a BAI2 file, after all control totals agree."""
    try:
        text = data.decode("ascii").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise StatementEncodingError(source, f"byte {e.start}", "BAI2 must be ASCII text") from None
    recs = _records(text, source)
    if not recs or recs[0].code != "01":
        raise StatementFormatError(source, "line 1", "BAI2 file does not start with a 01 file header")
    if recs[-1].code != "99":
        raise StatementFormatError(
            source, f"line {recs[-1].line}", "BAI2 file does not end with a 99 file trailer (truncated?)"
        )
    out: list[BankStatement] = []
    file_sum = 0
    file_recs = 0
    n_groups = 0
    group: dict[str, object] | None = None
    acct: dict[str, object] | None = None
    for rec in recs:
        where = f"line {rec.line} (record {rec.code})"
        nrec = 1 + len(rec.amounts)  # itself + its 88 continuations
        f = rec.fields
        if rec.code == "01":
            file_recs += nrec
        elif rec.code == "02":
            if group is not None:
                raise StatementFormatError(
                    source, where, "02 group header before the previous group's 98 trailer"
                )
            asof = _date(f[3], source, where)
            ccy = (f[5].strip() if len(f) > 5 else "") or "USD"
            if not is_iso_currency(ccy):
                raise StatementValueError(source, where, f"currency {ccy!r} is not an ISO 4217 code")
            group = {"asof": asof, "currency": ccy, "sum": 0, "recs": nrec, "accounts": 0, "line": rec.line}
        elif rec.code == "03":
            if group is None or acct is not None:
                raise StatementFormatError(
                    source, where, "03 account record outside a group or inside another account"
                )
            ccy = f[1].strip() or str(group["currency"])
            if not is_iso_currency(ccy):
                raise StatementValueError(source, where, f"currency {ccy!r} is not an ISO 4217 code")
            scale = Decimal(10) ** -minor_units(ccy)
            balances: list[Balance] = []
            total = 0
            i = 2
            while i + 1 < len(f) and f[i].strip():
                type_code = f[i].strip()
                amt = _int(f[i + 1], source, where, f"amount of type {type_code}")
                total += amt
                i = _funds_skip(f, i + 3, source, where) if i + 3 < len(f) else i + 4
                if type_code in _SUMMARY:
                    balances.append(
                        Balance(
                            type=_SUMMARY[type_code],  # type: ignore[arg-type]
                            amount=Decimal(amt) * scale,
                            currency=ccy,
                            date=group["asof"],  # type: ignore[arg-type]
                            code=type_code,
                        )
                    )
            acct = {
                "account": f[0].strip(),
                "currency": ccy,
                "scale": scale,
                "balances": balances,
                "entries": [],
                "sum": total,
                "recs": nrec,
                "line": rec.line,
            }
        elif rec.code == "16":
            if acct is None:
                raise StatementFormatError(
                    source, where, "16 transaction detail outside an account (no 03 before it)"
                )
            type_code = f[0].strip()
            amt = _int(f[1], source, where, "amount")
            acct["sum"] = int(acct["sum"]) + amt  # type: ignore[call-overload]
            acct["recs"] = int(acct["recs"]) + nrec  # type: ignore[call-overload]
            code = int(type_code) if type_code.isdigit() else -1
            if 100 <= code <= 399:
                sign = 1
            elif 400 <= code <= 699:
                sign = -1
            else:
                raise StatementValueError(
                    source,
                    where,
                    f"type code {type_code!r} is not a credit (100-399) or debit (400-699) detail",
                )
            value_date = group["asof"] if group else None
            if len(f) > 2 and f[2].strip() == "V":
                value_date = _date(f[3], source, where)
            j = _funds_skip(f, 2, source, where)
            bank_ref = f[j].strip() if j < len(f) else ""
            cust_ref = f[j + 1].strip() if j + 1 < len(f) else ""
            text = ",".join(f[j + 2 :]).strip() if j + 2 < len(f) else ""
            acct["entries"].append(  # type: ignore[union-attr]
                StatementEntry(
                    amount=sign * Decimal(amt) * acct["scale"],  # type: ignore[operator]
                    currency=str(acct["currency"]),
                    booking_date=group["asof"] if group else None,  # type: ignore[arg-type]
                    value_date=value_date,  # type: ignore[arg-type]
                    bank_reference=bank_ref or None,
                    customer_reference=cust_ref or None,
                    remittance=text or None,
                    bank_transaction_code=type_code,
                    source=source,
                    position=where,
                )
            )
        elif rec.code == "49":
            if acct is None or group is None:
                raise StatementFormatError(source, where, "49 account trailer without an open account")
            declared = _int(f[0], source, where, "account control total")
            declared_n = _int(f[1], source, where, "record count")
            recs_n = int(acct["recs"]) + nrec  # type: ignore[call-overload]
            if declared != acct["sum"] or declared_n != recs_n:
                raise StatementFormatError(
                    source,
                    where,
                    f"account {acct['account']} trailer declares control total {declared} over {declared_n} "
                    f"records but the account (from line {acct['line']}) sums to {acct['sum']} over {recs_n} "
                    "records",
                )
            bals = acct["balances"]
            opening = next((b for b in bals if b.type == "opening"), None)  # type: ignore[attr-defined,union-attr]
            closing = next((b for b in bals if b.type == "closing"), None)  # type: ignore[attr-defined,union-attr]
            stmt = BankStatement(
                format="bai2",
                source=source,
                position=f"line {acct['line']}",
                account=str(acct["account"]),
                currency=str(acct["currency"]),
                opening_balance=opening,
                closing_balance=closing,
                balances=list(bals),  # type: ignore[call-overload]
                entries=list(acct["entries"]),  # type: ignore[call-overload]
                declared_totals={"control_total": str(declared), "record_count": str(declared_n)},
            )
            stmt.balance_check = checks.balance_check(stmt)
            out.append(stmt)
            group["sum"] = int(group["sum"]) + declared  # type: ignore[call-overload]
            group["recs"] = int(group["recs"]) + recs_n  # type: ignore[call-overload]
            group["accounts"] = int(group["accounts"]) + 1  # type: ignore[call-overload]
            acct = None
        elif rec.code == "98":
            if group is None or acct is not None:
                raise StatementFormatError(
                    source, where, "98 group trailer without an open group or inside an account"
                )
            declared = _int(f[0], source, where, "group control total")
            n_acc = _int(f[1], source, where, "account count")
            declared_n = _int(f[2], source, where, "record count")
            recs_n = int(group["recs"]) + nrec  # type: ignore[call-overload]
            if (declared, n_acc, declared_n) != (group["sum"], group["accounts"], recs_n):
                raise StatementFormatError(
                    source,
                    where,
                    f"group trailer declares control total {declared}, {n_acc} accounts, {declared_n} records "
                    f"but the group (from line {group['line']}) has {group['sum']}, {group['accounts']} accounts, "
                    f"{recs_n} records",
                )
            file_sum += declared
            file_recs += recs_n
            n_groups += 1
            group = None
        elif rec.code == "99":
            if group is not None:
                raise StatementFormatError(
                    source, where, "99 file trailer while a group is still open (no 98)"
                )
            declared = _int(f[0], source, where, "file control total")
            n_g = _int(f[1], source, where, "group count")
            declared_n = _int(f[2], source, where, "record count")
            if (declared, n_g, declared_n) != (file_sum, n_groups, file_recs + nrec):
                raise StatementFormatError(
                    source,
                    where,
                    f"file trailer declares control total {declared}, {n_g} groups, {declared_n} records but the "
                    f"file has {file_sum}, {n_groups} groups, {file_recs + nrec} records",
                )
        else:
            raise StatementFormatError(source, where, f"unknown BAI2 record code {rec.code!r}")
    return out
