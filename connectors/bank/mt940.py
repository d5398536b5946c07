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
import codecs
import datetime as dt
import gc
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import IO, Any, NoReturn

from canonical_model.bank_statement import (
    Balance,
    BankStatement,
    StatementEntry,
    is_iso_currency,
)
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


def _balance(f: tuple[str, str, int], source: str, kind: str) -> Balance:
    tag, value, line = f
    where = f"line {line} (:{tag}:)"
    v = value.replace("\n", "").strip()
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
        code=tag,
    )


_REMIT_CODES = ("20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "60", "61", "62", "63")
_SEPA_NAMES = {k: f"sepa_{k.lower()}" for k in _SEPA_KEYS}
_SEPA_SPLIT = re.compile(r"(" + "|".join(_SEPA_KEYS) + r")\+")
# "?NN<text>" subfields; used only when every separator in the field is followed by two digits
_SUBFIELDS = {"?": re.compile(r"\?(\d\d)([^?]*)"), ">": re.compile(r">(\d\d)([^>]*)")}
# of the :86: keys, those an entry keeps in ``extra`` (the rest become entry fields)
_DETAIL_TO_EXTRA = frozenset(
    ["gvc", "booking_text", "primanota", "text_key_extension"]
    + [f"sepa_{k.lower()}" for k in _SEPA_KEYS if k not in ("EREF", "MREF", "CRED")]
)


def parse_details(text: str) -> dict[str, str]:
    """Split an :86: information field.

    German structured form (``GVC?00Buchungstext?20...?63``, also with ``>``) yields the subfields and,
    within the remittance subfields ?20–?29/?60–?63, the SEPA keywords EREF+/KREF+/MREF+/CRED+/SVWZ+/ABWA+…
    Any other layout is kept as free text. A subfield given twice is joined in order; a separator not
    followed by a two-digit code is text of the subfield opened last.
    """
    gvc, booking, primanota, bank, account, name, key_ext, sepa, remittance = _details(text, None)
    out: dict[str, str] = {}
    if gvc is not None:
        out["gvc"] = gvc
    if booking is not None:
        out["booking_text"] = booking
    if primanota is not None:
        out["primanota"] = primanota
    if bank:
        out["counterparty_bank"] = bank
    if account:
        out["counterparty_account"] = account
    if name:
        out["counterparty_name"] = name
    if key_ext is not None:
        out["text_key_extension"] = key_ext
    out.update(sepa)
    out["remittance"] = remittance
    return out


_Details = tuple[
    str | None, str | None, str | None, str | None, str | None, str | None, str | None, dict[str, str], str
]
_NO_SEPA: dict[str, str] = {}


def _details(text: str, extra: dict[str, str] | None) -> _Details:
    """(gvc, booking text, primanota, counterparty bank, account, name, text key extension, SEPA keys,
    remittance) of an :86: field, as ``parse_details`` gives them; the keys an entry keeps in ``extra``
    are put there too, in ``parse_details`` order."""
    flat = text.replace("\r", "")
    lead = flat.lstrip()
    m = _GER_RE.match(lead)
    if m is None:
        remittance = " ".join(part.strip() for part in flat.split("\n") if part.strip())
        return None, None, None, None, None, None, None, _NO_SEPA, remittance
    gvc, sep = m.groups()
    if extra is not None:
        extra["gvc"] = gvc
    joined = lead.replace("\n", "")
    pairs = _SUBFIELDS[sep].findall(joined, 3)
    sub: dict[str, str] = dict(pairs)
    parts: list[str]
    if len(sub) == len(pairs) == joined.count(sep):
        # usual case: each subfield once, every separator followed by its two-digit code
        parts = list(filter(None, map(sub.get, _REMIT_CODES)))
    else:
        lists: dict[str, list[str]] = {}
        last = ""
        pieces = joined[3:].split(sep)
        del pieces[0]
        for piece in pieces:
            code = piece[:2]
            if len(code) == 2 and code.isdigit():
                seen = lists.get(code)
                if seen is None:
                    lists[code] = [piece[2:]]
                    last = code
                else:
                    seen.append(piece[2:])
            elif lists:  # a stray separator inside text: keep it as text of the last subfield
                lists[last][-1] += sep + piece
        sub = {c: "".join(v) for c, v in lists.items()}
        parts = [v for c in _REMIT_CODES for v in lists.get(c, ())]
    get = sub.get
    booking = get("00")
    if booking is not None:
        booking = booking.strip()
        if extra is not None:
            extra["booking_text"] = booking
    primanota = get("10")
    if primanota is not None:
        primanota = primanota.strip()
        if extra is not None:
            extra["primanota"] = primanota
    bank = get("30", "").strip()
    account = get("31", "").strip() or get("38", "").strip()
    name = (get("32", "") + get("33", "")).strip()
    if name:
        name = " ".join(name.split())
    key_ext = get("34")
    if key_ext is not None:
        key_ext = key_ext.strip()
        if extra is not None:
            extra["text_key_extension"] = key_ext
    remit = "".join(parts)
    split = _SEPA_SPLIT.split(remit) if "+" in remit else None  # [text before, key, text, key, ...]
    if split is not None and len(split) > 1:
        sepa: dict[str, str] = {}
        names = _SEPA_NAMES
        it = iter(split)
        pre = next(it).strip()
        for key, val in zip(it, it, strict=True):
            sepa[names[key]] = val.strip()
        if extra is not None:
            for k, v in sepa.items():
                if k in _DETAIL_TO_EXTRA:
                    extra[k] = v
        remittance = sepa.get("sepa_svwz") or pre or remit.strip()
    else:
        sepa = _NO_SEPA
        remittance = " ".join(p.strip() for p in parts if p.strip())
    return gvc, booking, primanota, bank, account, name, key_ext, sepa, remittance


class _Stmt:
    """The raw fields of one statement; fields are (tag, value, line), entries [value, line, :86:s, :NS:s]."""

    __slots__ = ("line", "fields", "entries", "info86", "ns", "available")

    def __init__(self, line: int, f20: tuple[str, str, int]) -> None:
        self.line = line
        self.fields: dict[str, tuple[str, str, int]] = {"20": f20}
        self.entries: list[list[Any]] = []
        self.info86: list[str] = []
        self.ns: list[str] = []
        self.available: list[tuple[str, str, int]] = []


_FIELD_KEY = {"28": "28C", "60M": "60F", "62M": "62F", "13": "13D"}
_END_TAILS = frozenset(("", "}", "XXX"))
_EOF: list[str | None] = [None]


def _raw_statements(blocks: Iterable[list[str]], source: str) -> Iterator[_Stmt]:
    """Lines (in blocks) to raw statements, one at a time: tokenizer and statement assembly in one loop.

    Same rules as ``tokenize``: a field runs from a line starting with a known tag up to the next such
    line or message end (``-``, ``-}``, ``-XXX``); other lines continue it. A field is handled when it
    closes, so a refusal names the same field and line as reading the fields one by one would.
    """
    known = KNOWN_TAGS
    end_tails = _END_TAILS
    cur: _Stmt | None = None
    entries: list[list[Any]] = []  # cur.entries
    closed = False  # cur has its closing balance: no more :61:
    ended_at: int | None = None
    cur_tag: str | None = None
    cur_first = ""
    cur_more: list[str] | None = None
    cur_line = 0
    lineno = 0
    tag = ""
    end = 0
    for block in chain(blocks, (_EOF,)):
        first_no = lineno + 1  # numbering carries on across blocks
        for lineno, raw in enumerate(block, first_no):
            if raw is None:
                kind = 2  # end of input
            else:
                line = raw.rstrip("\r").strip("\x01\x03")
                if line[:1] == ":":
                    end = line.find(":", 1)
                    tag = line[1:end] if end > 1 else ""
                    if tag in known:
                        kind = 1  # a field starts
                    elif tag == "940" and cur_tag is None:
                        continue  # Rabobank's ":940:" message-type header
                    else:
                        kind = 0
                else:
                    kind = 0
                if kind == 0:
                    stripped = line.strip()
                    if stripped[:1] == "-" and len(stripped) <= 4 and stripped[1:] in end_tails:
                        kind = 3  # message end
                    else:
                        if cur_tag is not None:
                            if cur_more is None:
                                cur_more = [line]
                            else:
                                cur_more.append(line)
                        # else: header lines between messages ({1:...}, blank lines) are not data
                        continue
            if cur_tag is not None:  # the open field ends here
                value = (
                    cur_first.rstrip("\n ")
                    if cur_more is None
                    else "\n".join([cur_first, *cur_more]).rstrip("\n ")
                )
                ftag = cur_tag
                if ftag == "61":
                    if cur is None:
                        _outside(ftag, cur_line, ended_at, source)
                    if closed:
                        raise StatementFormatError(
                            source, f"line {cur_line} (:61:)", "statement line after the closing balance :62:"
                        )
                    entries.append([value, cur_line, None, None])
                elif ftag == "86":
                    if cur is None:
                        _outside(ftag, cur_line, ended_at, source)
                    if entries and not closed:
                        last = entries[-1]
                        if last[2] is None:
                            last[2] = [value]
                        else:
                            last[2].append(value)
                    else:
                        cur.info86.append(value)
                elif ftag == "20":
                    if cur is not None:
                        yield cur
                    cur = _Stmt(cur_line, (ftag, value, cur_line))
                    entries = cur.entries
                    closed = False
                    ended_at = None
                elif cur is None:
                    _outside(ftag, cur_line, ended_at, source)
                elif ftag == "NS":
                    if entries and not closed:
                        last = entries[-1]
                        if last[3] is None:
                            last[3] = [value]
                        else:
                            last[3].append(value)
                    else:
                        cur.ns.append(value)
                elif ftag == "64" or ftag == "65":
                    cur.available.append((ftag, value, cur_line))
                    closed = True
                elif ftag == "90D" or ftag == "90C":
                    cur.fields[ftag] = (ftag, value, cur_line)
                    closed = True
                elif ftag == "34F":
                    cur.fields.setdefault("34F", (ftag, value, cur_line))  # MT942: a debit and a credit limit
                else:
                    key = _FIELD_KEY.get(ftag, ftag)
                    prev = cur.fields.get(key)
                    if prev is not None:
                        raise StatementFormatError(
                            source,
                            f"line {cur_line} (:{ftag}:)",
                            f"second :{ftag}: in the statement that starts at line {cur.line} (first at line "
                            f"{prev[2]}); the file is corrupt or a tag was mistyped",
                        )
                    cur.fields[key] = (ftag, value, cur_line)
                    if key == "62F":
                        closed = True
            if kind == 1:
                cur_tag, cur_first, cur_more, cur_line = tag, line[end + 1 :], None, lineno
            elif kind == 3:
                cur_tag = None
                if cur is not None:
                    yield cur
                    cur = None
                    entries = []
                ended_at = lineno
            else:  # end of input
                if cur is not None:
                    yield cur
                return


def _outside(tag: str, line: int, ended_at: int | None, source: str) -> NoReturn:
    after = f" after the end of the message at line {ended_at}" if ended_at else ""
    raise StatementFormatError(
        source,
        f"line {line} (:{tag}:)",
        f"field outside any statement{after}: no :20: transaction reference precedes it "
        "(a fragment, not a complete MT940/MT942 message)",
    )


def _build(st: _Stmt, source: str) -> BankStatement:
    f = st.fields
    where = f"statement at line {st.line} (:20:{f['20'][1].strip()})"
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
    account = f["25"][1].replace("\n", "").strip()
    if not account:
        raise StatementFormatError(source, f"line {f['25'][2]} (:25:)", "empty account identification")
    num = f["28C"][1].replace("\n", "").strip()
    stmt_no, _, seq = num.partition("/")
    opening = closing = None
    balances: list[Balance] = []
    if "60F" in f:
        opening = _balance(f["60F"], source, "opening" if f["60F"][0] == "60F" else "interim_opening")
        balances.append(opening)
    if "62F" in f:
        closing = _balance(f["62F"], source, "closing" if f["62F"][0] == "62F" else "interim_closing")
        balances.append(closing)
    for a in st.available:
        balances.append(_balance(a, source, "available" if a[0] == "64" else "forward_available"))
    if is_942:
        _, v34, l34 = f["34F"]
        m = _34F_RE.fullmatch(v34.strip())
        if not m:
            raise StatementFormatError(
                source, f"line {l34} (:34F:)", f"floor limit {v34!r} is not currency+amount"
            )
        currency = _currency(m.group(1), source, f"line {l34} (:34F:)")
    else:
        assert opening is not None
        currency = opening.currency
    created = None
    if "13D" in f:
        _, v13, l13 = f["13D"]
        m = _13D_RE.fullmatch(v13.strip())
        if m:
            d = _yymmdd(m.group(1), source, f"line {l13} (:13D:)")
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
            _, v90, l90 = f[tag]
            w = f"line {l90} (:{tag}:)"
            m = _90_RE.fullmatch(v90.strip())
            if not m:
                raise StatementFormatError(source, w, f"{v90!r} is not count + currency + amount")
            _currency(m.group(2), source, w)
            totals[f"{side}_count"] = str(int(m.group(1)))
            totals[f"{side}_sum"] = format(_amount(m.group(3), source, w), "f")
    entries = [_entry(e, currency, source) for e in st.entries]
    info = "\n".join(st.info86) or None
    return BankStatement(
        format=fmt,
        source=source,
        position=f"line {st.line}",
        account=account,
        currency=currency,
        statement_id=f["20"][1].strip(),
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


# Dates repeat across a file: each distinct YYMMDD / YYMMDD+MMDD is checked once (bounded caches).
_DATES: dict[str, tuple[dt.date, dt.date, bool]] = {}
_DATE_CACHE_MAX = 100_000


def _dates(vd: str, ed: str | None, source: str, where: str) -> tuple[dt.date, dt.date, bool]:
    """(value date, entry date, value date moved to month end) of a :61: date pair, checked and cached."""
    moved: dict[str, str] = {}
    value_date = _yymmdd(vd, source, where, moved)
    booking_date = _entry_date(ed, value_date, source, where) if ed else value_date
    if len(_DATES) >= _DATE_CACHE_MAX:
        _DATES.clear()
    dates = _DATES[vd if ed is None else vd + ed] = (value_date, booking_date, bool(moved))
    return dates


_ENTRY_FIELDS_SET = frozenset(
    [
        "amount",
        "currency",
        "booking_date",
        "value_date",
        "reversal",
        "bank_reference",
        "customer_reference",
        "end_to_end_id",
        "mandate_id",
        "creditor_id",
        "counterparty_name",
        "counterparty_account",
        "counterparty_bank",
        "remittance",
        "bank_transaction_code",
        "transaction_type",
        "extra",
        "source",
        "position",
    ]
)
_new = object.__new__
_setattr = object.__setattr__


def _entry(e: list[Any], currency: str, source: str) -> StatementEntry:
    """One :61: (with its :86: and :NS: values) as an entry; every value checked here, once."""
    value, line, d86, ns = e
    first, _, supplementary = value.partition("\n")
    m = _LINE61_RE.fullmatch(first.strip())
    if m is None:
        raise StatementFormatError(
            source,
            f"line {line} (:61:)",
            f"statement line {first.strip()!r} is not YYMMDD[MMDD] + C/D/RC/RD + amount + "
            "transaction type (e.g. 2401310131D12,50NTRFNONREF)",
        )
    vd, ed, mark, funds, amt, ttype, rest = m.groups()
    extra: dict[str, str] = {}
    key = vd if ed is None else vd + ed
    dates = _DATES.get(key)
    if dates is None:
        dates = _dates(vd, ed, source, f"line {line} (:61:)")
    value_date, booking_date, moved = dates
    if moved:
        extra["raw_value_date"] = vd
    if "." in amt or amt.count(",") > 1:
        amount = _amount(amt, source, f"line {line} (:61:)")  # refuses it with the reason
    else:  # the pattern already holds digits and at most one comma
        amount = Decimal(amt.replace(",", ".").rstrip(".") or "0")
    cust, sep, bank_ref = rest.partition("//")
    if funds:
        extra["funds_code"] = funds
    if supplementary.strip():
        extra["supplementary"] = " ".join(supplementary.split())
    if d86 is not None:
        raw86 = "\n".join(d86)
        if raw86:
            extra["raw_86"] = raw86
        # also puts gvc, booking text, primanota, key extension and SEPA keys into extra
        gvc, _, _, cp_bank, cp_account, cp_name, _, sepa, remittance = _details(raw86, extra)
        sget = sepa.get
        eref, mref, cred = sget("sepa_eref"), sget("sepa_mref"), sget("sepa_cred")
    else:
        gvc = cp_bank = cp_account = cp_name = remittance = eref = mref = cred = None
    if ns is not None:
        extra["ns"] = "\n".join(ns)
    cust = cust.strip()
    obj = _new(StatementEntry)
    _setattr(
        obj,
        "__dict__",
        {
            "amount": amount if mark == "C" or mark == "RD" else -amount,
            "currency": currency,
            "booking_date": booking_date,
            "value_date": value_date,
            "booking_time": None,
            "reversal": mark[0] == "R",
            "status": "booked",
            "bank_reference": (bank_ref.strip() or None) if sep else None,
            "customer_reference": None if cust in ("", "NONREF") else cust,
            "end_to_end_id": eref,
            "mandate_id": mref,
            "creditor_id": cred,
            "counterparty_name": cp_name or None,
            "counterparty_account": cp_account or None,
            "counterparty_bank": cp_bank or None,
            "remittance": remittance or None,
            "bank_transaction_code": gvc,
            "transaction_type": ttype.strip(),
            "balance_after": None,
            "details": [],
            "extra": extra,
            "source": source,
            "position": f"line {line}",
        },
    )
    # what ``from_validated`` does, inlined: this runs once per entry
    _setattr(obj, "__pydantic_fields_set__", set(_ENTRY_FIELDS_SET))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


def _statements(blocks: Iterable[list[str]], source: str) -> Iterator[BankStatement]:
    any_stmt = False
    for st in _raw_statements(blocks, source):
        any_stmt = True
        # A statement's entries form no reference cycles; the cyclic collector would only rescan the
        # thousands of young objects built here (~10% of the time), so it waits until the statement is done.
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            s = _build(st, source)
            s.balance_check = checks.balance_check(s)
        finally:
            if collecting:
                gc.enable()
        yield s
    if not any_stmt:
        raise StatementFormatError(
            source, "line 1", "no MT940/MT942 statement found (no :20: transaction reference field)"
        )


_CHUNK = 1 << 20
_HEAD = 4096


def _utf8_from_here(first: bytes, fp: IO[bytes]) -> bool:
    """Whether ``first`` and the rest of a seekable stream are valid UTF-8 (read in chunks, then rewound)."""
    start = fp.tell()
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        chunk = first
        while chunk:
            if not chunk.isascii() or dec.getstate()[0]:
                dec.decode(chunk)
            chunk = fp.read(_CHUNK)
        dec.decode(b"", True)
    except UnicodeDecodeError:
        return False
    finally:
        fp.seek(start)
    return True


def _line_blocks(fp: IO[bytes], source: str) -> Iterator[list[str]]:
    """The lines of a binary stream, about 1 MiB at a time, decoded incrementally exactly as ``decode``.

    The encoding is chosen for the whole file as ``decode`` does: UTF-8 if all of it is valid UTF-8, else
    Latin-1. A seekable stream is checked in a first pass (chunked, nothing kept). A pipe cannot be read
    twice: it is read as UTF-8 and switches to Latin-1 at the first invalid byte, which gives the same text
    as long as nothing before it was non-ASCII; a file that mixes both is refused.
    """
    first = fp.read(_CHUNK)
    while 0 < len(first) < _HEAD:
        more = fp.read(_CHUNK)
        if not more:
            break
        first += more
    if first.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in first[:_HEAD]:
        pos, offset = first.find(b"\x00"), len(first)
        while pos < 0:
            more = fp.read(_CHUNK)
            if not more:
                break
            found = more.find(b"\x00")
            pos = offset + found if found >= 0 else -1
            offset += len(more)
        raise StatementEncodingError(
            source,
            f"byte {max(pos, 0)}",
            "file contains NUL bytes or a UTF-16 byte-order mark; MT940 must be ASCII, Latin-1 or UTF-8 text",
        )
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    seekable = getattr(fp, "seekable", None)
    checked = bool(seekable and seekable())
    encoding = "utf-8" if not checked or _utf8_from_here(first, fp) else "latin-1"
    dec = codecs.getincrementaldecoder(encoding)()
    non_ascii = False
    tail = ""
    chunk = first
    final = False
    while True:
        try:
            text = dec.decode(chunk, final)
        except UnicodeDecodeError:
            if checked or non_ascii:
                raise StatementEncodingError(
                    source,
                    None,
                    "the stream is partly UTF-8 and partly Latin-1; read it from a seekable file so the "
                    "encoding can be chosen for the whole file",
                ) from None
            pending = dec.getstate()[0]
            dec = codecs.getincrementaldecoder("latin-1")()
            text = dec.decode(pending + chunk, final)
        if not non_ascii and not text.isascii():
            non_ascii = True
        if final:
            yield [tail + text]
            return
        lines = (tail + text).split("\n") if tail else text.split("\n")
        tail = lines.pop()
        if lines:
            yield lines
        chunk = fp.read(_CHUNK)
        if not chunk:
            final = True


def iter_statements(text: str, *, source: str) -> Iterator[BankStatement]:
    """Statements of decoded text one by one, each with ``balance_check`` filled (see ``iter_stream``)."""
    return _statements([text.split("\n")], source)


def iter_stream(fp: IO[bytes], *, source: str) -> Iterator[BankStatement]:
    """Statements from a binary stream one at a time, each with ``balance_check`` filled.

    Memory holds one statement and a 1 MiB read buffer, never the file or its decoded text; the result and
    the refusals are exactly those of ``parse`` on the same bytes.
    """
    return _statements(_line_blocks(fp, source), source)


def parse_file(path: str | Path, *, source: str | None = None) -> list[BankStatement]:
    """Every statement of an MT940/MT942 file on disk, read as a stream (``iter_stream`` to go one by one)."""
    with open(path, "rb") as fp:
        return list(iter_stream(fp, source=str(path) if source is None else source))


def parse(data: bytes, *, source: str) -> list[BankStatement]:
    """Every statement in an MT940/MT942 file; refuses the whole file on the first error."""
    return list(iter_stream(io.BytesIO(data), source=source))
