"""OFX bank and credit-card statements: 1.x (SGML, leaf tags left open) and 2.x (XML).

Why a small own tokenizer instead of a library: both versions reduce to the same tag stream once SGML's
unclosed leaf elements are recognised (a tag followed by text is a leaf), and the few fields a statement
needs (CURDEF, ACCTID, LEDGERBAL, STMTTRN) do not justify a dependency. No DTD is ever loaded: OFX 2.x files
with a DOCTYPE or ENTITY declaration are refused like camt.
OFX carries the closing (ledger) balance only; no opening balance is invented.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

from canonical_model.bank_statement import Balance, BankStatement, StatementEntry, is_iso_currency
from connectors.bank import checks
from connectors.bank.errors import (
    StatementEncodingError,
    StatementFormatError,
    StatementSecurityError,
    StatementValueError,
)

_TOKEN_RE = re.compile(r"<(/?)([A-Za-z0-9_.]+)[^>]*>([^<]*)")
_AMOUNT_RE = re.compile(r"[+-]?\d+(\.\d+)?|[+-]?\.\d+")
_DATE_RE = re.compile(
    r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?(?:\.\d+)?)?(?:\[([+-]?\d+(?:\.\d+)?)(?::\w+)?\])?"
)
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&apos;": "'", "&nbsp;": " "}


def sniff(data: bytes) -> bool:
    head = data[:2048].decode("latin-1").lstrip("\ufeff\r\n ")
    return head.startswith("OFXHEADER") or "<?OFX" in head or head.upper().startswith("<OFX>")


@dataclass
class _Node:
    tag: str
    line: int
    text: str | None = None
    children: list[_Node] = field(default_factory=list)

    def find(self, path: str) -> _Node | None:
        node: _Node | None = self
        for part in path.split("/"):
            if node is None:
                return None
            node = next((c for c in node.children if c.tag == part), None)
        return node

    def findall(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]

    def text_of(self, path: str) -> str | None:
        n = self.find(path)
        return n.text if n is not None and n.text else None

    def iter(self, tag: str) -> list[_Node]:
        out = []
        stack = [self]
        while stack:
            n = stack.pop()
            if n.tag == tag:
                out.append(n)
            stack.extend(reversed(n.children))
        return out


def _decode(data: bytes, source: str) -> str:
    head = data[:1024].decode("latin-1")
    if "\x00" in head:
        raise StatementEncodingError(source, "byte 0", "OFX file contains NUL bytes (UTF-16 or binary)")
    enc = "utf-8"
    m = re.search(r"encoding=\"([\w-]+)\"", head)
    if m:
        enc = m.group(1)
    elif re.search(r"CHARSET:\s*1252", head):
        enc = "cp1252"
    elif re.search(r"CHARSET:\s*(ISO-?8859-?1|8859-1)", head, re.I):
        enc = "latin-1"
    elif re.search(r"ENCODING:\s*USASCII", head) and not re.search(r"CHARSET:\s*NONE", head):
        enc = "ascii"
    try:
        return data.decode(enc).lstrip("\ufeff")
    except (UnicodeDecodeError, LookupError) as e:
        pos = getattr(e, "start", 0)
        raise StatementEncodingError(
            source, f"byte {pos}", f"OFX header declares {enc} but the bytes are not valid {enc}"
        ) from None


def _tree(text: str, source: str) -> _Node:
    if re.search(r"<!(DOCTYPE|ENTITY)", text):
        raise StatementSecurityError(
            source,
            None,
            "OFX contains a DOCTYPE/ENTITY declaration; refused (entity expansion is never needed)",
        )
    start = text.find("<OFX>")
    if start < 0:
        raise StatementFormatError(source, "line 1", "no <OFX> root element after the header")
    base_line = text.count("\n", 0, start) + 1
    body = text[start:]
    root = _Node("#root", 0)
    stack = [root]
    line = base_line
    pos_line = 0
    for m in _TOKEN_RE.finditer(body):
        line += body.count("\n", pos_line, m.start())
        pos_line = m.start()
        closing, tag, tail = m.group(1), m.group(2).upper(), m.group(3)
        if closing:
            # close back to the matching open tag (SGML leaves are implicitly closed)
            for i in range(len(stack) - 1, 0, -1):
                if stack[i].tag == tag:
                    del stack[i:]
                    break
            else:
                kids = stack[-1].children
                if not (kids and kids[-1].tag == tag and kids[-1].text is not None):
                    raise StatementFormatError(
                        source, f"line {line}", f"closing tag </{tag}> without opening tag"
                    )
            continue
        value = tail.strip()
        node = _Node(tag, line)
        stack[-1].children.append(node)
        if value:
            for k, v in _ENTITIES.items():
                value = value.replace(k, v)
            node.text = value
        else:
            stack.append(node)
    if len(stack) > 1 and any(n.tag == "OFX" for n in stack):
        raise StatementFormatError(
            source, f"line {line}", f"file ends inside <{stack[-1].tag}> (truncated?): </OFX> missing"
        )
    return root


def _date(raw: str | None, source: str, where: str) -> dt.datetime | None:
    if not raw:
        return None
    m = _DATE_RE.fullmatch(raw.strip())
    if not m:
        raise StatementValueError(
            source, where, f"date {raw!r} is not an OFX date (YYYYMMDD[HHMMSS][.XXX][[TZ]])"
        )
    y, mo, d, hh, mi, ss, tz = m.groups()
    tzinfo = None
    if tz:
        tzinfo = dt.timezone(dt.timedelta(hours=float(tz)))
    try:
        return dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), tzinfo=tzinfo)
    except ValueError:
        raise StatementValueError(source, where, f"date {raw!r} is not a calendar date") from None


def _amount(raw: str | None, source: str, where: str) -> Decimal:
    raw = (raw or "").strip()
    if "," in raw:
        raise StatementValueError(
            source, where, f"amount {raw!r} uses ',' as decimal separator; OFX requires '.' (e.g. -12.50)"
        )
    if not _AMOUNT_RE.fullmatch(raw):
        raise StatementValueError(source, where, f"amount {raw!r} is not a signed decimal number")
    return Decimal(raw)


def parse(data: bytes, *, source: str) -> list[BankStatement]:
    """Every STMTRS/CCSTMTRS in an OFX file."""
    root = _tree(_decode(data, source), source)
    out: list[BankStatement] = []
    for trnrs in root.iter("STMTTRNRS") + root.iter("CCSTMTTRNRS"):
        code = trnrs.text_of("STATUS/CODE")
        if code not in (None, "0"):
            msg = trnrs.text_of("STATUS/MESSAGE") or trnrs.text_of("STATUS/SEVERITY") or ""
            raise StatementFormatError(
                source, f"line {trnrs.line} <{trnrs.tag}>", f"bank reported STATUS CODE {code}: {msg}".strip()
            )
    for rs in root.iter("STMTRS") + root.iter("CCSTMTRS"):
        out.append(_statement(rs, source))
    if not out:
        raise StatementFormatError(source, None, "OFX file contains no STMTRS or CCSTMTRS statement")
    return out


def _statement(rs: _Node, source: str) -> BankStatement:
    where = f"line {rs.line} <{rs.tag}>"
    currency = rs.text_of("CURDEF")
    if not currency or not is_iso_currency(currency):
        raise StatementValueError(source, where + " CURDEF", f"currency {currency!r} is not an ISO 4217 code")
    acct = rs.find("BANKACCTFROM") or rs.find("CCACCTFROM")
    if acct is None or not acct.text_of("ACCTID"):
        raise StatementFormatError(source, where, "no BANKACCTFROM/CCACCTFROM with ACCTID")
    account = acct.text_of("ACCTID") or ""
    tranlist = rs.find("BANKTRANLIST")
    entries: list[StatementEntry] = []
    period_from = period_to = None
    if tranlist is not None:
        period_from = _date(tranlist.text_of("DTSTART"), source, f"line {tranlist.line} DTSTART")
        period_to = _date(tranlist.text_of("DTEND"), source, f"line {tranlist.line} DTEND")
        for t in tranlist.findall("STMTTRN"):
            tw = f"line {t.line} <STMTTRN>"
            amount = _amount(t.text_of("TRNAMT"), source, tw + " TRNAMT")
            posted = _date(t.text_of("DTPOSTED"), source, tw + " DTPOSTED")
            if posted is None:
                raise StatementFormatError(source, tw, "STMTTRN has no DTPOSTED")
            avail = _date(t.text_of("DTAVAIL"), source, tw + " DTAVAIL")
            ccy = t.text_of("CURRENCY/CURSYM") or currency
            if not is_iso_currency(ccy):
                raise StatementValueError(
                    source, tw + " CURRENCY", f"currency {ccy!r} is not an ISO 4217 code"
                )
            extra = {k.lower(): v for k in ("TRNTYPE", "CHECKNUM", "SIC", "PAYEEID") if (v := t.text_of(k))}
            to = t.find("BANKACCTTO") or t.find("CCACCTTO")
            entries.append(
                StatementEntry(
                    amount=amount,
                    currency=ccy,
                    booking_date=posted.date(),
                    value_date=(avail or posted).date(),
                    booking_time=posted if posted.time() != dt.time() else None,
                    bank_reference=t.text_of("FITID"),
                    customer_reference=t.text_of("REFNUM") or t.text_of("CHECKNUM"),
                    counterparty_name=t.text_of("NAME") or t.text_of("PAYEE/NAME"),
                    counterparty_account=to.text_of("ACCTID") if to else None,
                    counterparty_bank=to.text_of("BANKID") if to else None,
                    remittance=t.text_of("MEMO"),
                    bank_transaction_code=t.text_of("TRNTYPE"),
                    extra=extra,
                    source=source,
                    position=tw,
                )
            )
    balances = []
    closing = None
    for tag, kind in (("LEDGERBAL", "closing"), ("AVAILBAL", "available")):
        b = rs.find(tag)
        if b is not None:
            bw = f"line {b.line} <{tag}>"
            asof = _date(b.text_of("DTASOF"), source, bw + " DTASOF")
            bal = Balance(
                type=kind,  # type: ignore[arg-type]
                amount=_amount(b.text_of("BALAMT"), source, bw + " BALAMT"),
                currency=currency,
                date=asof.date() if asof else None,
                code=tag,
            )
            balances.append(bal)
            if kind == "closing":
                closing = bal
    stmt = BankStatement(
        format="ofx",
        source=source,
        position=where,
        account=account,
        currency=currency,
        account_bank=acct.text_of("BANKID"),
        period_from=period_from,
        period_to=period_to,
        closing_balance=closing,
        balances=balances,
        entries=entries,
    )
    stmt.balance_check = checks.balance_check(stmt)
    return stmt
