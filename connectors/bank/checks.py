"""Checks on parsed statements: balances add up, sequences are continuous, nothing is booked twice.

Why here and not in each parser: the rules are the same whatever dialect the bank spoke, and an auditor
should find them in one place. Every result is either "ok" or one plain sentence a person can act on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from canonical_model.bank_statement import BankStatement, StatementEntry

OK = "ok"


def _fmt(amount: Decimal, currency: str) -> str:
    return f"{amount:f} {currency}"


def balance_check(stmt: BankStatement) -> str:
    """Opening + Σ booked entries = closing; "ok" or one sentence saying by how much it misses.

    Intraday reports (MT942, camt.052) and notifications (camt.054) usually carry no opening/closing pair;
    for them the declared debit/credit totals (MT942 :90D:/:90C:) are checked instead when present.
    """
    booked = [e for e in stmt.entries if e.status == "booked"]
    ob, cb = stmt.opening_balance, stmt.closing_balance
    running = _running_balance_check(stmt)
    if running is not None and running != OK:
        return running
    if ob is None or cb is None:
        if running == OK:
            return OK
        totals = _declared_totals_check(stmt)
        if totals is not None:
            return totals
        missing = "opening" if ob is None else "closing"
        if ob is None and cb is None:
            missing = "opening and closing"
        noun = (
            "intraday report"
            if stmt.is_intraday
            else "notification"
            if stmt.format.startswith("camt.054")
            else "statement"
        )
        return f"not checked: the {noun} carries no {missing} booked balance."
    if ob.currency != cb.currency:
        return (
            f"does not add up: the opening balance is in {ob.currency} but the closing balance is in "
            f"{cb.currency}, so they cannot be compared."
        )
    foreign = sorted({e.currency for e in booked if e.currency != ob.currency})
    if foreign:
        return (
            f"does not add up: {len([e for e in booked if e.currency != ob.currency])} entries are in "
            f"{', '.join(foreign)} while the balances are in {ob.currency}."
        )
    total = sum((e.amount for e in booked), Decimal(0))
    expected = ob.amount + total
    if expected == cb.amount:
        totals = _declared_totals_check(stmt)
        return totals if totals is not None and totals != OK else OK
    diff = cb.amount - expected
    return (
        f"does not add up: opening {_fmt(ob.amount, ob.currency)} + {len(booked)} entries "
        f"{_fmt(total, ob.currency)} = {_fmt(expected, ob.currency)}, but the closing balance is "
        f"{_fmt(cb.amount, cb.currency)}: off by {_fmt(diff, cb.currency)}."
    )


def _running_balance_check(stmt: BankStatement) -> str | None:
    """Exports with a running balance (余额) per row: each row's balance = previous balance + its amount."""
    rows = [e for e in stmt.entries if e.balance_after is not None]
    if not rows or len(rows) != len(stmt.entries):
        return None
    prev = stmt.opening_balance.amount if stmt.opening_balance else None
    for e in rows:
        assert e.balance_after is not None
        if prev is not None and prev + e.amount != e.balance_after:
            return (
                f"does not add up: at {e.position} the balance {prev:f} + amount {e.amount:f} should be "
                f"{prev + e.amount:f} but the row says {e.balance_after:f}: off by {e.balance_after - prev - e.amount:f} "
                f"{e.currency}."
            )
        prev = e.balance_after
    if stmt.closing_balance is not None and prev != stmt.closing_balance.amount:
        return (
            f"does not add up: the last row's balance is {prev:f} but the closing balance is "
            f"{stmt.closing_balance.amount:f}: off by {stmt.closing_balance.amount - prev:f} {stmt.currency}."
        )
    return OK


def _declared_totals_check(stmt: BankStatement) -> str | None:
    """Compare declared control totals (count/sum of debits and credits) with the entries."""
    t = stmt.declared_totals
    if not t:
        return None
    problems = []
    for side, sign in (("debit", -1), ("credit", 1)):
        if f"{side}_sum" not in t:
            continue
        picked = [e for e in stmt.entries if (e.amount < 0 if sign < 0 else e.amount > 0)]
        s = sum((abs(e.amount) for e in picked), Decimal(0))
        want_sum = Decimal(t[f"{side}_sum"])
        want_n = int(t[f"{side}_count"]) if t.get(f"{side}_count") not in (None, "") else None
        if s != want_sum or (want_n is not None and want_n != len(picked)):
            n = f" ({want_n} entries)" if want_n is not None else ""
            problems.append(
                f"the file declares {side}s of {want_sum:f} {stmt.currency}{n} but its "
                f"{len(picked)} {side} entries total {s:f} {stmt.currency}"
            )
    if "entry_sum" in t:
        s = sum((e.amount for e in stmt.entries), Decimal(0))
        if s != Decimal(t["entry_sum"]):
            problems.append(
                f"the file's control total is {Decimal(t['entry_sum']):f} but its entries total {s:f}"
            )
    if not problems:
        return OK
    return "does not add up: " + "; ".join(problems) + "."


def annotate(statements: Iterable[BankStatement]) -> list[BankStatement]:
    """Fill ``balance_check`` on every statement (parsers call this before handing statements out)."""
    out = []
    for s in statements:
        s.balance_check = balance_check(s)
        out.append(s)
    return out


@dataclass(frozen=True)
class SequenceFinding:
    """A gap or overlap between two consecutive statements of one account."""

    account: str
    previous: str
    current: str
    kind: str  # "gap" | "overlap" | "balance"
    message: str


def _seq_int(stmt: BankStatement) -> int | None:
    raw = stmt.statement_number or stmt.electronic_sequence or stmt.legal_sequence
    if raw is None:
        return None
    head = raw.split("/")[0].strip()
    return int(head) if head.isdigit() else None


def sequence_check(statements: Iterable[BankStatement]) -> list[SequenceFinding]:
    """Per account, consecutive statements must continue each other.

    A statement number that jumps (5 → 7) is a gap, one that repeats or goes back is an overlap; when the
    numbers say nothing (banks send 0 or 00000/00) the balances decide: the previous closing must equal the
    next opening, otherwise something was booked in between that we never saw (gap).
    Intraday reports (MT942/camt.052) are skipped: they are expected to overlap.
    """
    by_account: dict[str, list[BankStatement]] = {}
    for s in statements:
        if not s.is_intraday and not s.format.startswith("camt.054"):
            by_account.setdefault(s.account, []).append(s)
    findings: list[SequenceFinding] = []
    for account, stmts in by_account.items():
        for prev, cur in zip(stmts, stmts[1:], strict=False):
            pn, cn = _seq_int(prev), _seq_int(cur)
            p_id = f"{prev.statement_number or prev.statement_id} ({prev.position})"
            c_id = f"{cur.statement_number or cur.statement_id} ({cur.position})"
            if pn is not None and cn is not None and (pn, cn) != (0, 0):
                if cn == pn + 1 or (cn == pn and _same_page_run(prev, cur)):
                    pass
                elif cn > pn + 1:
                    findings.append(
                        SequenceFinding(
                            account,
                            p_id,
                            c_id,
                            "gap",
                            f"account {account}: statement {pn} is followed by {cn}; "
                            f"{cn - pn - 1} statement(s) missing in between.",
                        )
                    )
                    continue
                else:
                    findings.append(
                        SequenceFinding(
                            account,
                            p_id,
                            c_id,
                            "overlap",
                            f"account {account}: statement {cn} comes after {pn}; it repeats or goes back.",
                        )
                    )
                    continue
            pc, co = prev.closing_balance, cur.opening_balance
            if pc is not None and co is not None and (pc.amount, pc.currency) != (co.amount, co.currency):
                kind = "gap"
                if pc.date and co.date and co.date < pc.date:
                    kind = "overlap"
                findings.append(
                    SequenceFinding(
                        account,
                        p_id,
                        c_id,
                        kind,
                        f"account {account}: statement {c_id} opens at {_fmt(co.amount, co.currency)} "
                        f"but the previous one {p_id} closed at {_fmt(pc.amount, pc.currency)} "
                        f"(difference {co.amount - pc.amount:f}).",
                    )
                )
    return findings


def _same_page_run(prev: BankStatement, cur: BankStatement) -> bool:
    """MT940 :28C:5/1 then 5/2: same statement number, next page (sequence) — continuous."""
    try:
        return int(cur.sequence_number or 0) == int(prev.sequence_number or 0) + 1
    except ValueError:
        return False


def file_fingerprint(data: bytes) -> str:
    """SHA-256 of the original bytes: the same file imported twice archives nothing new."""
    return hashlib.sha256(data).hexdigest()


def statement_fingerprint(stmt: BankStatement) -> str:
    """Identity of a statement independent of file name, transport and re-encoding.

    Account + format family + statement id/number + balances + every entry's (date, amount, reference):
    the same statement delivered twice (e.g. once as MT940 and again re-sent) gives the same fingerprint.
    """
    h = hashlib.sha256()
    ob, cb = stmt.opening_balance, stmt.closing_balance
    head = [
        stmt.account,
        stmt.currency,
        stmt.statement_id or "",
        stmt.statement_number or "",
        stmt.sequence_number or "",
        f"{ob.amount:f}|{ob.date}" if ob else "",
        f"{cb.amount:f}|{cb.date}" if cb else "",
    ]
    h.update("\x1f".join(head).encode())
    for e in stmt.entries:
        h.update(b"\x1e")
        h.update(entry_key(e).encode())
    return h.hexdigest()


def entry_key(e: StatementEntry) -> str:
    """What makes two entries the same booking, wherever and however often they were reported."""
    return "\x1f".join(
        [
            e.currency,
            f"{e.amount:f}",
            str(e.booking_date or ""),
            str(e.value_date or ""),
            e.bank_reference or "",
            e.end_to_end_id or "",
            e.customer_reference or "",
            (e.remittance or "")[:140],
            "R" if e.reversal else "",
        ]
    )


def dedupe_intraday(statements: Iterable[BankStatement]) -> list[StatementEntry]:
    """Entries of overlapping MT942/camt.052 reports, each booking once.

    Intraday reports are cumulative or overlapping: report 2 repeats what report 1 already said. Two entries
    are the same booking when account and ``entry_key`` agree; a genuine second booking with identical data
    in the same report is kept (counted per report, the maximum multiplicity over reports wins).
    """
    seen: dict[tuple[str, str], int] = {}
    out: list[StatementEntry] = []
    for s in statements:
        local: dict[tuple[str, str], int] = {}
        for e in s.entries:
            k = (s.account, entry_key(e))
            local[k] = local.get(k, 0) + 1
            if local[k] > seen.get(k, 0):
                seen[k] = local[k]
                out.append(e)
    return out


def duplicate_statements(statements: Iterable[BankStatement]) -> list[tuple[BankStatement, BankStatement]]:
    """Pairs (first, repeat) of statements with the same fingerprint: the repeat archives nothing new."""
    first: dict[str, BankStatement] = {}
    dups = []
    for s in statements:
        fp = statement_fingerprint(s)
        if fp in first:
            dups.append((first[fp], s))
        else:
            first[fp] = s
    return dups
