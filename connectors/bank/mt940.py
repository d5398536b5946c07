"""SWIFT MT940 (customer statement) and MT942 (interim transaction report).

Hand-written tokenizer rather than the ``mt-940`` library: the library is lenient by design (it reads
fragments, keeps the last :25: it saw, treats ``RC`` as a credit) while an archive must be exact and must
say precisely where a file is wrong. The rules followed, each with its reason:

* Only known field tags start a field; anything else (``:26:37 Fo...`` inside a wrapped :86:) is a
  continuation line. Banks wrap free text at 65 characters regardless of what it looks like.
* ``RC`` is a reversal of a credit, i.e. a debit entry; ``RD`` a reversal of a debit, i.e. a credit (SWIFT
  field 61 subfield 3). The balances of real files prove it (see tests).
* The entry date (MMDD) takes the year that puts it closest to the value date, so an entry booked on
  31 Dec for value 2 Jan (or the reverse) lands in the right year.
* German banks date quarter-end interest on the 30th of February (30/360 convention); such a day is moved
  to the month's last day and the raw date is kept in ``extra``.
* A statement needs :20:, :25:, :28C:, :60F/M: and :62F/M: (MT942: :20:, :25:, :34F:); a file that is only
  fragments, ends inside a statement or carries fields outside any statement is refused.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from canonical_model.bank_statement import Balance, BankStatement, StatementEntry, is_iso_currency
from connectors.bank import checks
from connectors.bank.errors import (
    StatementEncodingError,
    StatementFormatError,
    StatementValueError,
)

FORMAT = "mt940"

KNOWN_TAGS = frozenset(
    [
        "20",
        "21",
        "25",
        "25P",
        "28",
        "28C",
        "60F",
        "60M",
        "61",
        "62F",
        "62M",
        "64",
        "65",
        "86",
        "34F",
        "13",
        "13D",
        "90D",
        "90C",
        "NS",
    ]
)
_TAG_RE = re.compile(r":([0-9]{2}[A-Z]?|NS):")
_BAL_RE = re.compile(r"([CD])(\d{6})([A-Z]{3})(.*)")
_LINE61_RE = re.compile(
    r"(?P<vd>\d{6})(?P<ed>\d{4})?(?P<mark>R?[CD])(?P<funds>[A-Z])?(?P<amount>\d[\d,.]*)"
    r"(?P<type>[A-Z][A-Z0-9 ]{3})(?P<rest>.*)"
)
_AMOUNT_RE = re.compile(r"\d+(,\d*)?")
_90_RE = re.compile(r"(\d+)([A-Z]{3})(\d[\d,.]*)")
_34F_RE = re.compile(r"([A-Z]{3})([CD])?(\d[\d,.]*)")
_13D_RE = re.compile(r"(\d{6})(\d{4})([+-]\d{4})?")
_GER_RE = re.compile(r"^(\d{3})([?>])")
_SEPA_KEYS = ("EREF", "KREF", "MREF", "CRED", "DEBT", "COAM", "OAMT", "SVWZ", "ABWA", "ABWE", "IBAN", "BIC")
_SEPA_RE = re.compile(r"(" + "|".join(_SEPA_KEYS) + r")\+")


def sniff(data: bytes) -> bool:
    """An MT940/942 file has SWIFT field tags at line starts near the top."""
    head = data[:4096].decode("latin-1")
    return bool(re.search(r"(?m)^:(20|25|28C?|60F|61):", head)) or head.lstrip("\x01\r\n").startswith("{1:")


def decode(data: bytes, source: str) -> str:
    """SWIFT text is ASCII; banks add Latin-1 or UTF-8 umlauts. UTF-16 or binary is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        pos = data.find(b"\x00")
        raise StatementEncodingError(
            source,
            f"byte {max(pos, 0)}",
            "file contains NUL bytes or a UTF-16 byte-order mark; MT940 must be ASCII, Latin-1 or UTF-8 text",
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


@dataclass
class _Field:
    tag: str
    value: str
    line: int


def tokenize(text: str) -> Iterator[_Field | int]:
    """Yield fields (tag, value with continuation lines, line number) and message ends (an int line no)."""
    cur_tag: str | None = None
    cur_lines: list[str] = []
    cur_line = 0
    lineno = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip("\x01\x03")
        if line.startswith(":"):
            end = line.find(":", 1)
            tag = line[1:end] if end > 1 else ""
            if tag in KNOWN_TAGS:
                if cur_tag is not None:
                    yield _Field(cur_tag, "\n".join(cur_lines).rstrip("\n "), cur_line)
                cur_tag, cur_lines, cur_line = tag, [line[end + 1 :]], lineno
                continue
            if tag == "940" and cur_tag is None:
                continue  # Rabobank's ":940:" message-type header
        stripped = line.strip()
        if stripped.startswith("-") and len(stripped) <= 4 and stripped[1:] in ("", "}", "XXX"):
            if cur_tag is not None:
                yield _Field(cur_tag, "\n".join(cur_lines).rstrip("\n "), cur_line)
                cur_tag, cur_lines = None, []
            yield lineno
            continue
        if cur_tag is not None:
            cur_lines.append(line)
        # else: header lines between messages (ABNANL2A, 940, {1:...}, blank lines) are not data
    if cur_tag is not None:
        yield _Field(cur_tag, "\n".join(cur_lines).rstrip("\n "), cur_line)


def _amount(raw: str, source: str, where: str) -> Decimal:
    raw = raw.strip()
    if "." in raw:
        raise StatementValueError(
            source, where, f"amount {raw!r} uses '.' as decimal separator; MT940 requires ',' (e.g. 1234,56)"
        )
    if not _AMOUNT_RE.fullmatch(raw):
        raise StatementValueError(source, where, f"amount {raw!r} is not digits with one ',' decimal comma")
    return Decimal(raw.replace(",", ".").rstrip(".") or "0")


def _yymmdd(raw: str, source: str, where: str, extra: dict[str, str] | None = None) -> dt.date:
    yy, mm, dd = int(raw[0:2]), int(raw[2:4]), int(raw[4:6])
    year = 1900 + yy if yy >= 80 else 2000 + yy
    if not 1 <= mm <= 12 or not 1 <= dd <= 31:
        raise StatementValueError(source, where, f"date {raw!r} is not a valid YYMMDD date")
    last = calendar.monthrange(year, mm)[1]
    if dd > last:
        if extra is not None:
            extra["raw_value_date"] = raw
        dd = last  # German 30/360 quarter-end dates (30 Feb)
    return dt.date(year, mm, dd)


def _entry_date(mmdd: str, value_date: dt.date, source: str, where: str) -> dt.date:
    mm, dd = int(mmdd[:2]), int(mmdd[2:])
    best: dt.date | None = None
    for year in (value_date.year - 1, value_date.year, value_date.year + 1):
        try:
            cand = dt.date(year, mm, min(dd, calendar.monthrange(year, mm)[1]) if dd <= 31 else dd)
        except (ValueError, calendar.IllegalMonthError):
            continue
        if best is None or abs((cand - value_date).days) < abs((best - value_date).days):
            best = cand
    if best is None:
        raise StatementValueError(source, where, f"entry date {mmdd!r} is not a valid MMDD date")
    return best


def _currency(code: str, source: str, where: str) -> str:
    if not is_iso_currency(code):
        raise StatementValueError(source, where, f"currency {code!r} is not an ISO 4217 code")
    return code


def _balance(f: _Field, source: str, kind: str) -> Balance:
    where = f"line {f.line} (:{f.tag}:)"
    v = f.value.replace("\n", "").strip()
    m = _BAL_RE.fullmatch(v)
    if not m:
        raise StatementFormatError(
            source,
            where,
            f"balance {v!r} is not D/C mark + YYMMDD date + 3-letter currency + amount "
            "(e.g. C240131EUR1234,56)",
        )
    mark, date_raw, ccy, amt = m.groups()
    amount = _amount(amt, source, where)
    return Balance(
        type=kind,  # type: ignore[arg-type]
        amount=-amount if mark == "D" else amount,
        currency=_currency(ccy, source, where),
        date=_yymmdd(date_raw, source, where),
        code=f.tag,
    )


def parse_details(text: str) -> dict[str, str]:
    """Split an :86: information field.

    German structured form (``GVC?00Buchungstext?20...?63``, also with ``>``) yields the subfields and,
    within the remittance subfields ?20–?29/?60–?63, the SEPA keywords EREF+/KREF+/MREF+/CRED+/SVWZ+/ABWA+…
    Any other layout is kept as free text.
    """
    out: dict[str, str] = {}
    flat = text.replace("\r", "")
    m = _GER_RE.match(flat.lstrip())
    if not m:
        out["remittance"] = " ".join(part.strip() for part in flat.split("\n") if part.strip())
        return out
    flat = flat.lstrip()
    sep = m.group(2)
    joined = flat.replace("\n", "")
    out["gvc"] = m.group(1)
    sub: dict[str, list[str]] = {}
    for piece in joined[3:].split(sep)[1:]:
        code, val = piece[:2], piece[2:]
        if len(code) == 2 and code.isdigit():
            sub.setdefault(code, []).append(val)
        elif sub:  # a stray separator inside text: keep it as text of the last subfield
            last = list(sub)[-1]
            sub[last][-1] += sep + piece
    if "00" in sub:
        out["booking_text"] = "".join(sub["00"]).strip()
    if "10" in sub:
        out["primanota"] = "".join(sub["10"]).strip()
    remit_codes = [f"{i:02d}" for i in (*range(20, 30), *range(60, 64))]
    parts = [v for c in remit_codes for v in sub.get(c, [])]
    bank = "".join(sub.get("30", [])).strip()
    acct = "".join(sub.get("31", [])).strip() or "".join(sub.get("38", [])).strip()
    name = "".join(sub.get("32", []) + sub.get("33", [])).strip()
    if bank:
        out["counterparty_bank"] = bank
    if acct:
        out["counterparty_account"] = acct
    if name:
        out["counterparty_name"] = " ".join(name.split())
    if "34" in sub:
        out["text_key_extension"] = "".join(sub["34"]).strip()
    remit = "".join(parts)
    keyed = list(_SEPA_RE.finditer(remit))
    if keyed:
        pre = remit[: keyed[0].start()].strip()
        for i, km in enumerate(keyed):
            end = keyed[i + 1].start() if i + 1 < len(keyed) else len(remit)
            out[f"sepa_{km.group(1).lower()}"] = remit[km.end() : end].strip()
        out["remittance"] = out.get("sepa_svwz") or pre or remit.strip()
    else:
        out["remittance"] = " ".join(p.strip() for p in parts if p.strip())
    return out


@dataclass
class _Stmt:
    line: int
    fields: dict[str, _Field] = field(default_factory=dict)
    entries: list[tuple[_Field, list[_Field], list[_Field]]] = field(default_factory=list)
    info86: list[_Field] = field(default_factory=list)
    ns: list[_Field] = field(default_factory=list)
    available: list[_Field] = field(default_factory=list)
    closed: bool = False  # closing balance seen: no more :61:


def _fields_to_statements(fields: Iterator[_Field | int], source: str) -> Iterator[_Stmt]:
    cur: _Stmt | None = None
    ended_at: int | None = None
    for f in fields:
        if isinstance(f, int):
            if cur is not None:
                yield cur
                cur = None
            ended_at = f
            continue
        if f.tag == "20":
            if cur is not None:
                yield cur
            cur = _Stmt(line=f.line, fields={"20": f})
            ended_at = None
            continue
        if cur is None:
            after = f" after the end of the message at line {ended_at}" if ended_at else ""
            raise StatementFormatError(
                source,
                f"line {f.line} (:{f.tag}:)",
                f"field outside any statement{after}: no :20: transaction reference precedes it "
                "(a fragment, not a complete MT940/MT942 message)",
            )
        tag = f.tag
        if tag == "61":
            if cur.closed:
                raise StatementFormatError(
                    source, f"line {f.line} (:61:)", "statement line after the closing balance :62:"
                )
            cur.entries.append((f, [], []))
        elif tag == "86":
            if cur.entries and not cur.closed:
                cur.entries[-1][1].append(f)
            else:
                cur.info86.append(f)
        elif tag == "NS":
            if cur.entries and not cur.closed:
                cur.entries[-1][2].append(f)
            else:
                cur.ns.append(f)
        elif tag in ("64", "65"):
            cur.available.append(f)
            cur.closed = True
        elif tag in ("90D", "90C"):
            cur.fields[tag] = f
            cur.closed = True
        elif tag == "34F":
            cur.fields.setdefault("34F", f)  # MT942 may give a debit and a credit floor limit
        else:
            key = {"28": "28C", "60M": "60F", "62M": "62F", "13": "13D"}.get(tag, tag)
            if key in cur.fields:
                prev = cur.fields[key]
                raise StatementFormatError(
                    source,
                    f"line {f.line} (:{tag}:)",
                    f"second :{tag}: in the statement that starts at line {cur.line} (first at line "
                    f"{prev.line}); the file is corrupt or a tag was mistyped",
                )
            cur.fields[key] = f
            if key == "62F":
                cur.closed = True
    if cur is not None:
        yield cur


def _build(st: _Stmt, source: str) -> BankStatement:
    f = st.fields
    where = f"statement at line {st.line} (:20:{f['20'].value.strip()})"
    is_942 = ("34F" in f or "13D" in f) and "60F" not in f
    fmt = "mt942" if is_942 else "mt940"
    need = ["25", "28C"] + (["34F"] if is_942 else ["60F", "62F"])
    names = {
        "25": "account :25:",
        "28C": "statement number :28C:",
        "60F": "opening balance :60F:",
        "62F": "closing balance :62F:",
        "34F": "floor limit :34F:",
    }
    missing = [n for n in need if n not in f]
    if missing:
        hint = " (file truncated?)" if missing == ["62F"] else ""
        raise StatementFormatError(
            source, where, f"{fmt.upper()} statement has no {', '.join(names[m] for m in missing)}{hint}"
        )
    account = f["25"].value.replace("\n", "").strip()
    if not account:
        raise StatementFormatError(source, f"line {f['25'].line} (:25:)", "empty account identification")
    num = f["28C"].value.replace("\n", "").strip()
    stmt_no, _, seq = num.partition("/")
    opening = closing = None
    balances: list[Balance] = []
    if "60F" in f:
        opening = _balance(f["60F"], source, "opening" if f["60F"].tag == "60F" else "interim_opening")
        balances.append(opening)
    if "62F" in f:
        closing = _balance(f["62F"], source, "closing" if f["62F"].tag == "62F" else "interim_closing")
        balances.append(closing)
    for a in st.available:
        balances.append(_balance(a, source, "available" if a.tag == "64" else "forward_available"))
    if is_942:
        m = _34F_RE.fullmatch(f["34F"].value.strip())
        if not m:
            raise StatementFormatError(
                source,
                f"line {f['34F'].line} (:34F:)",
                f"floor limit {f['34F'].value!r} is not currency+amount",
            )
        currency = _currency(m.group(1), source, f"line {f['34F'].line} (:34F:)")
    else:
        assert opening is not None
        currency = opening.currency
    created = None
    if "13D" in f:
        m = _13D_RE.fullmatch(f["13D"].value.strip())
        if m:
            d = _yymmdd(m.group(1), source, f"line {f['13D'].line} (:13D:)")
            hhmm = m.group(2)
            tz = None
            if m.group(3):
                off = m.group(3)
                delta = dt.timedelta(hours=int(off[1:3]), minutes=int(off[3:5]))
                tz = dt.timezone(-delta if off[0] == "-" else delta)
            created = dt.datetime(d.year, d.month, d.day, int(hhmm[:2]), int(hhmm[2:]), tzinfo=tz)
    totals: dict[str, str] = {}
    for tag, side in (("90D", "debit"), ("90C", "credit")):
        if tag in f:
            w = f"line {f[tag].line} (:{tag}:)"
            m = _90_RE.fullmatch(f[tag].value.strip())
            if not m:
                raise StatementFormatError(source, w, f"{f[tag].value!r} is not count + currency + amount")
            _currency(m.group(2), source, w)
            totals[f"{side}_count"] = str(int(m.group(1)))
            totals[f"{side}_sum"] = format(_amount(m.group(3), source, w), "f")
    entries = [_entry(e, d86, ns, currency, source) for e, d86, ns in st.entries]
    info = "\n".join(x.value for x in st.info86) or None
    return BankStatement(
        format=fmt,
        source=source,
        position=f"line {st.line}",
        account=account,
        currency=currency,
        statement_id=f["20"].value.strip(),
        statement_number=stmt_no.strip() or None,
        sequence_number=seq.strip() or None,
        created_at=created,
        opening_balance=opening,
        closing_balance=closing,
        balances=balances,
        entries=entries,
        declared_totals=totals,
        info=info,
    )


def _entry(f61: _Field, d86: list[_Field], ns: list[_Field], currency: str, source: str) -> StatementEntry:
    where = f"line {f61.line} (:61:)"
    first, _, supplementary = f61.value.partition("\n")
    m = _LINE61_RE.fullmatch(first.strip())
    if not m:
        raise StatementFormatError(
            source,
            where,
            f"statement line {first.strip()!r} is not YYMMDD[MMDD] + C/D/RC/RD + amount + "
            "transaction type (e.g. 2401310131D12,50NTRFNONREF)",
        )
    extra: dict[str, str] = {}
    value_date = _yymmdd(m["vd"], source, where, extra)
    booking_date = _entry_date(m["ed"], value_date, source, where) if m["ed"] else value_date
    amount = _amount(m["amount"], source, where)
    mark = m["mark"]
    signed = amount if mark in ("C", "RD") else -amount
    rest = m["rest"]
    cust, sep, bank_ref = rest.partition("//")
    raw86 = "\n".join(x.value for x in d86)
    det = parse_details(raw86) if d86 else {}
    if m["funds"]:
        extra["funds_code"] = m["funds"]
    if supplementary.strip():
        extra["supplementary"] = " ".join(supplementary.split())
    if raw86:
        extra["raw_86"] = raw86
    for k in ("gvc", "booking_text", "primanota", "text_key_extension"):
        if k in det:
            extra[k] = det[k]
    for k, v in det.items():
        if k.startswith("sepa_") and k not in ("sepa_eref", "sepa_mref", "sepa_cred"):
            extra[k] = v
    if ns:
        extra["ns"] = "\n".join(x.value for x in ns)
    cust = cust.strip()
    return StatementEntry(
        amount=signed,
        currency=currency,
        booking_date=booking_date,
        value_date=value_date,
        reversal=mark.startswith("R"),
        bank_reference=(bank_ref.strip() or None) if sep else None,
        customer_reference=None if cust in ("", "NONREF") else cust,
        end_to_end_id=det.get("sepa_eref"),
        mandate_id=det.get("sepa_mref"),
        creditor_id=det.get("sepa_cred"),
        counterparty_name=det.get("counterparty_name"),
        counterparty_account=det.get("counterparty_account"),
        counterparty_bank=det.get("counterparty_bank"),
        remittance=det.get("remittance") or None,
        bank_transaction_code=det.get("gvc"),
        transaction_type=m["type"].strip(),
        extra=extra,
        source=source,
        position=f"line {f61.line}",
    )


def iter_statements(text: str, *, source: str) -> Iterator[BankStatement]:
    """Statements one by one, each with ``balance_check`` filled (memory: one statement at a time)."""
    any_stmt = False
    for st in _fields_to_statements(tokenize(text), source):
        any_stmt = True
        s = _build(st, source)
        s.balance_check = checks.balance_check(s)
        yield s
    if not any_stmt:
        raise StatementFormatError(
            source, "line 1", "no MT940/MT942 statement found (no :20: transaction reference field)"
        )


def parse(data: bytes, *, source: str) -> list[BankStatement]:
    """Every statement in an MT940/MT942 file; refuses the whole file on the first error."""
    return list(iter_statements(decode(data, source), source=source))
