"""ISO 20022 camt.052 (intraday report), camt.053 (statement), camt.054 (debit/credit notification).

Versions .001.01 to .001.08 are read by one code path; the differences are local: ``Sts`` (text, up to v7)
vs ``Sts/Cd`` (v8+), ``Dbtr/Nm`` vs ``Dbtr/Pty/Nm`` (v8+), ``BICOrBEI`` (v2) vs ``AnyBIC`` (v4+), ``BIC`` vs
``BICFI``, and the transaction amount at ``TxDtls/Amt`` (v3+) vs ``TxDtls/AmtDtls/TxAmt/Amt`` (v2).

Why streamed: a year of camt.053 for a busy account is hundreds of megabytes. ``lxml.etree.iterparse``
hands over each ``Ntry`` when it closes; it is turned into a canonical entry and removed from the tree, and
each statement is yielded when its record closes, so memory holds one statement, never the file.

Why defused: statements arrive from outside. A DOCTYPE (the carrier of entity bombs and external
entities) is refused before parsing starts, and lxml runs with ``resolve_entities=False, no_network=True,
huge_tree=False, load_dtd=False`` as a second wall.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from typing import IO, Any

from lxml import etree

from canonical_model.bank_statement import (
    Balance,
    BankStatement,
    StatementEntry,
    TransactionDetail,
    is_iso_currency,
)
from connectors.bank import checks
from connectors.bank.errors import (
    StatementFormatError,
    StatementSecurityError,
    StatementValueError,
)

_NS_RE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.(05[234])\.001\.(\d\d)")
_RECORD = {"052": "Rpt", "053": "Stmt", "054": "Ntfctn"}
_CONTAINER = {"052": "BkToCstmrAcctRpt", "053": "BkToCstmrStmt", "054": "BkToCstmrDbtCdtNtfctn"}
_INFO = {"052": "AddtlRptInf", "053": "AddtlStmtInf", "054": "AddtlNtfctnInf"}
_BAL_TYPES = {
    "OPBD": "opening",
    "CLBD": "closing",
    "ITBD": "interim",
    "CLAV": "available",
    "OPAV": "opening_available",
    "FWAV": "forward_available",
    "ITAV": "interim_available",
    "PRCD": "previously_closed",
    "INFO": "information",
    "XPCD": "expected",
}
_STATUS = {"BOOK": "booked", "PDNG": "pending", "FUTR": "pending", "INFO": "info"}
_AMOUNT_RE = re.compile(r"\d{1,18}(\.\d{1,17})?")
_HEAD_BYTES = 65536


def sniff(data: bytes) -> bool:
    head = data[:4096].decode("latin-1")
    return "urn:iso:std:iso:20022:tech:xsd:camt.05" in head


class _Prefixed:
    """File-like that replays the bytes already read for the DOCTYPE check, then the rest of the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                out, self._head = self._head + self._rest.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._rest.read(n)


def _refuse_dtd(head: bytes, source: str) -> None:
    """A camt message never needs a DTD; its presence is how entity bombs and XXE get in."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="replace")
    else:
        text = head.decode("latin-1")
    root = re.search(r"<[A-Za-z_]", text)
    prolog = text[: root.start()] if root else text
    m = re.search(r"<!(DOCTYPE|ENTITY)", prolog) or re.search(r"<!ENTITY", text)
    if m:
        line = text[: m.start()].count("\n") + 1
        raise StatementSecurityError(
            source,
            f"line {line}",
            f"XML contains a <!{m.group(1)} declaration; camt messages never need one and it is how entity "
            "bombs and external-entity (XXE) reads get in, so the file is refused unparsed",
        )
    if root is None and len(head) >= _HEAD_BYTES:
        raise StatementFormatError(source, "prolog", f"no root element within the first {_HEAD_BYTES} bytes")


@lru_cache(maxsize=512)
def _qpath(ns: str, path: str) -> str:
    return "/".join(f"{{{ns}}}{p}" for p in path.split("/"))


class _Reader:
    """Namespace-aware small helpers bound to one message's namespace."""

    def __init__(self, ns: str, source: str) -> None:
        self.ns = ns
        self.source = source

    def find(self, el: Any, path: str) -> Any:
        return el.find(_qpath(self.ns, path))

    def findall(self, el: Any, path: str) -> list[Any]:
        return el.findall(_qpath(self.ns, path))

    def text(self, el: Any, *paths: str) -> str | None:
        for p in paths:
            node = el.find(_qpath(self.ns, p))
            if node is not None and node.text is not None and node.text.strip():
                return " ".join(node.text.split())
        return None

    def where(self, el: Any, label: str) -> str:
        return f"{label} (line {el.sourceline})"

    def currency(self, code: str | None, el: Any, label: str) -> str:
        if not code or not is_iso_currency(code):
            raise StatementValueError(
                self.source, self.where(el, label), f"currency {code!r} is not an ISO 4217 code"
            )
        return code

    def amount(self, el: Any, label: str) -> tuple[Decimal, str]:
        """(unsigned amount, currency) of an ``Amt``-like element, refusing what ISO 20022 forbids."""
        raw = (el.text or "").strip()
        if "," in raw:
            raise StatementValueError(
                self.source,
                self.where(el, label),
                f"amount {raw!r} uses ',' as decimal separator; ISO 20022 requires '.' (e.g. 1234.56)",
            )
        if not _AMOUNT_RE.fullmatch(raw):
            raise StatementValueError(
                self.source, self.where(el, label), f"amount {raw!r} is not a non-negative decimal number"
            )
        return Decimal(raw), self.currency(el.get("Ccy"), el, label + "/@Ccy")

    def date(self, el: Any, path: str, label: str) -> tuple[dt.date | None, dt.datetime | None]:
        node = self.find(el, path)
        if node is None:
            return None, None
        d = self.text(node, "Dt")
        t = self.text(node, "DtTm")
        try:
            if d:
                return dt.date.fromisoformat(d[:10]), None
            if t:
                stamp = dt.datetime.fromisoformat(t)
                return stamp.date(), stamp
        except ValueError:
            raise StatementValueError(
                self.source, self.where(node, label), f"date {d or t!r} is not an ISO 8601 date"
            ) from None
        return None, None

    def datetime(self, el: Any, path: str, label: str) -> dt.datetime | None:
        t = self.text(el, path)
        if not t:
            return None
        try:
            return dt.datetime.fromisoformat(t)
        except ValueError:
            raise StatementValueError(
                self.source, self.where(el, label), f"timestamp {t!r} is not ISO 8601"
            ) from None


def iter_statements(fp: IO[bytes], *, source: str) -> Iterator[BankStatement]:
    """Stream statements from a camt.052/053/054 file object, one at a time, memory flat."""
    head = fp.read(_HEAD_BYTES)
    if not head.strip():
        raise StatementFormatError(source, "line 1", "file is empty")
    _refuse_dtd(head, source)
    ctx = etree.iterparse(
        _Prefixed(head, fp),
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
    )
    depth = -1
    r: _Reader | None = None
    msg_type = version = ""
    rec_tag = ntry_tag = ""
    grp: dict[str, Any] = {}
    entries: list[StatementEntry] = []
    rec_index = 0
    n_records = 0
    try:
        for event, el in ctx:
            if event == "start":
                depth += 1
                if depth == 0:
                    msg_type, version, ns = _root(el, source)
                    r = _Reader(ns, source)
                    rec_tag = f"{{{ns}}}{_RECORD[msg_type]}"
                    ntry_tag = f"{{{ns}}}Ntry"
                elif depth == 1 and r is not None and not _is_container(el, r.ns, msg_type):
                    raise StatementFormatError(
                        source,
                        f"line {el.sourceline}",
                        f"element {etree.QName(el).localname} where camt.{msg_type} requires "
                        f"{_CONTAINER[msg_type]}",
                    )
                elif depth == 2 and el.tag == rec_tag:
                    rec_index += 1
                    entries = []
                continue
            # end event
            assert r is not None
            if depth == 3 and el.tag == ntry_tag:
                label = f"{_RECORD[msg_type]}[{rec_index}]/Ntry[{len(entries) + 1}]"
                entries.append(_entry(r, el, label))
                el.getparent().remove(el)  # keep memory flat
            elif depth == 2:
                if el.tag == rec_tag:
                    n_records += 1
                    stmt = _record(r, el, msg_type, version, rec_index, grp, entries)
                    stmt.balance_check = checks.balance_check(stmt)
                    entries = []
                    el.getparent().remove(el)
                    yield stmt
                elif etree.QName(el).localname == "GrpHdr":
                    grp = {
                        "message_id": r.text(el, "MsgId"),
                        "created_at": r.datetime(el, "CreDtTm", "GrpHdr/CreDtTm"),
                    }
                    el.clear()
            depth -= 1
    except etree.XMLSyntaxError as e:
        line = e.position[0] if e.position else getattr(e, "lineno", None)
        raise StatementFormatError(
            source, f"line {line}" if line else None, f"XML is not well-formed (truncated?): {e.msg}"
        ) from None
    if r is None:
        raise StatementFormatError(source, "line 1", "no XML root element")
    if n_records == 0:
        raise StatementFormatError(
            source,
            _CONTAINER[msg_type],
            f"the message has no {_RECORD[msg_type]} element: it carries no "
            f"{'statement' if msg_type == '053' else 'report' if msg_type == '052' else 'notification'}",
        )


def _is_container(el: Any, ns: str, msg_type: str) -> bool:
    """camt.05x.001.01 suffixes the container with the version (``BkToCstmrAcctRptV01``)."""
    name = _CONTAINER[msg_type]
    tag = el.tag
    return tag == f"{{{ns}}}{name}" or re.fullmatch(rf"\{{{re.escape(ns)}\}}{name}V\d\d", tag) is not None


def _root(el: Any, source: str) -> tuple[str, str, str]:
    q = etree.QName(el)
    m = _NS_RE.fullmatch(q.namespace or "")
    if q.localname != "Document" or not m:
        raise StatementFormatError(
            source,
            f"line {el.sourceline}",
            f"root element is {q.localname!r} in namespace {q.namespace!r}; expected Document in "
            "urn:iso:std:iso:20022:tech:xsd:camt.052/053/054.001.xx",
        )
    return m.group(1), m.group(2), q.namespace or ""


def _party_name(r: _Reader, el: Any, role: str) -> str | None:
    return r.text(el, f"RltdPties/{role}/Nm", f"RltdPties/{role}/Pty/Nm")


def _party_account(r: _Reader, el: Any, role: str) -> str | None:
    base = f"RltdPties/{role}Acct/Id"
    return r.text(el, f"{base}/IBAN", f"{base}/Othr/Id", f"{base}/PrtryAcct/Id", f"{base}/BBAN")


def _party_id(r: _Reader, el: Any, role: str) -> str | None:
    for base in (f"RltdPties/{role}", f"RltdPties/{role}/Pty"):
        v = r.text(el, f"{base}/Id/OrgId/BICOrBEI", f"{base}/Id/OrgId/AnyBIC", f"{base}/Id/OrgId/Othr/Id")
        if v:
            return v
        v = r.text(el, f"{base}/Id/PrvtId/Othr/Id")
        if v:
            return v
    return None


def _agent(r: _Reader, el: Any, role: str) -> str | None:
    base = f"RltdAgts/{role}Agt/FinInstnId"
    return r.text(el, f"{base}/BIC", f"{base}/BICFI", f"{base}/ClrSysMmbId/MmbId", f"{base}/Nm")


def _btc(r: _Reader, el: Any) -> tuple[str | None, str | None]:
    dom = r.text(el, "BkTxCd/Domn/Cd")
    fam = r.text(el, "BkTxCd/Domn/Fmly/Cd")
    sub = r.text(el, "BkTxCd/Domn/Fmly/SubFmlyCd")
    prtry = r.text(el, "BkTxCd/Prtry/Cd")
    code = "/".join(x for x in (dom, fam, sub) if x) or None
    return code, prtry


def _detail(r: _Reader, tx: Any, label: str, credit: bool) -> TransactionDetail:
    amt_el = r.find(tx, "Amt")
    if amt_el is None:
        amt_el = r.find(tx, "AmtDtls/TxAmt/Amt")
    amount = currency = None
    if amt_el is not None:
        amount, currency = r.amount(amt_el, label + "/Amt")
    other = "Dbtr" if credit else "Cdtr"
    ustrd = [" ".join(u.text.split()) for u in r.findall(tx, "RmtInf/Ustrd") if u.text and u.text.strip()]
    code, prtry = _btc(r, tx)
    return TransactionDetail(
        amount=amount,
        currency=currency,
        end_to_end_id=_noref(r.text(tx, "Refs/EndToEndId")),
        mandate_id=r.text(tx, "Refs/MndtId"),
        instruction_id=r.text(tx, "Refs/InstrId"),
        transaction_id=r.text(tx, "Refs/TxId", "Refs/UETR"),
        bank_reference=r.text(tx, "Refs/AcctSvcrRef"),
        counterparty_name=_party_name(r, tx, f"Ultmt{other}") or _party_name(r, tx, other),
        counterparty_account=_party_account(r, tx, other),
        counterparty_bank=_agent(r, tx, other),
        counterparty_id=_party_id(r, tx, other),
        remittance=" ".join(ustrd) or r.text(tx, "RmtInf/Strd/AddtlRmtInf", "AddtlTxInf"),
        creditor_reference=r.text(tx, "RmtInf/Strd/CdtrRefInf/Ref"),
        bank_transaction_code=code or prtry,
    )


def _noref(v: str | None) -> str | None:
    return None if v in (None, "NOTPROVIDED") else v


def _entry(r: _Reader, el: Any, label: str) -> StatementEntry:
    where = r.where(el, label)
    amt_el = r.find(el, "Amt")
    if amt_el is None:
        raise StatementFormatError(r.source, where, "entry has no Amt")
    amount, currency = r.amount(amt_el, label + "/Amt")
    ind = r.text(el, "CdtDbtInd")
    if ind not in ("CRDT", "DBIT"):
        raise StatementFormatError(r.source, where, f"CdtDbtInd is {ind!r}; expected CRDT or DBIT")
    credit = ind == "CRDT"
    sts_raw = r.text(el, "Sts/Cd", "Sts/Prtry", "Sts")
    status = _STATUS.get(sts_raw or "BOOK")
    if status is None:
        raise StatementFormatError(
            r.source, where, f"entry status {sts_raw!r} is not BOOK, PDNG, INFO or FUTR"
        )
    booking_date, booking_time = r.date(el, "BookgDt", label + "/BookgDt")
    value_date, _ = r.date(el, "ValDt", label + "/ValDt")
    code, prtry = _btc(r, el)
    details = [
        _detail(r, tx, f"{label}/TxDtls[{i}]", credit)
        for i, tx in enumerate(r.findall(el, "NtryDtls/TxDtls"), start=1)
    ]
    one = details[0] if len(details) == 1 else None
    extra: dict[str, str] = {}
    if prtry:
        extra["proprietary_code"] = prtry
    for key, path in (("entry_ref", "NtryRef"), ("additional_info", "AddtlNtryInf")):
        v = r.text(el, path)
        if v:
            extra[key] = v
    if len(details) > 1:
        extra["batch_count"] = str(len(details))
    remittance = (one.remittance if one else None) or extra.get("additional_info")
    return StatementEntry(
        amount=amount if credit else -amount,
        currency=currency,
        booking_date=booking_date,
        value_date=value_date,
        booking_time=booking_time,
        reversal=(r.text(el, "RvslInd") or "").lower() in ("true", "1"),
        status=status,  # type: ignore[arg-type]
        bank_reference=r.text(el, "AcctSvcrRef") or (one.bank_reference if one else None),
        customer_reference=one.instruction_id if one else None,
        end_to_end_id=one.end_to_end_id if one else None,
        mandate_id=one.mandate_id if one else None,
        counterparty_name=one.counterparty_name if one else None,
        counterparty_account=one.counterparty_account if one else None,
        counterparty_bank=one.counterparty_bank if one else None,
        remittance=remittance,
        bank_transaction_code=code or prtry,
        details=details,
        extra=extra,
        source=r.source,
        position=where,
    )


def _record(
    r: _Reader,
    el: Any,
    msg_type: str,
    version: str,
    index: int,
    grp: dict[str, Any],
    entries: list[StatementEntry],
) -> BankStatement:
    label = f"{_RECORD[msg_type]}[{index}]"
    where = r.where(el, label)
    account = r.text(
        el, "Acct/Id/IBAN", "Acct/Id/Othr/Id", "Acct/Id/PrtryAcct/Id", "Acct/Id/BBAN", "Acct/Id/UPIC"
    )
    if not account:
        raise StatementFormatError(
            r.source, where, "no account: Acct/Id/IBAN and Acct/Id/Othr/Id are missing"
        )
    balances: list[Balance] = []
    for i, bal in enumerate(r.findall(el, "Bal"), start=1):
        bl = f"{label}/Bal[{i}]"
        code = r.text(bal, "Tp/CdOrPrtry/Cd") or r.text(bal, "Tp/CdOrPrtry/Prtry")
        amt_el = r.find(bal, "Amt")
        if amt_el is None:
            raise StatementFormatError(r.source, r.where(bal, bl), "balance has no Amt")
        amt, ccy = r.amount(amt_el, bl + "/Amt")
        ind = r.text(bal, "CdtDbtInd")
        if ind not in ("CRDT", "DBIT"):
            raise StatementFormatError(
                r.source, r.where(bal, bl), f"CdtDbtInd is {ind!r}; expected CRDT or DBIT"
            )
        d, _ = r.date(bal, "Dt", bl + "/Dt")
        balances.append(
            Balance(
                type=_BAL_TYPES.get(code or "", "other"),  # type: ignore[arg-type]
                amount=amt if ind == "CRDT" else -amt,
                currency=ccy,
                date=d,
                code=code,
            )
        )
    opening = next((b for b in balances if b.code == "OPBD"), None) or next(
        (b for b in balances if b.code == "PRCD"), None
    )
    closing = next((b for b in balances if b.code == "CLBD"), None)
    ccy_text = r.text(el, "Acct/Ccy")
    if ccy_text:
        currency = r.currency(ccy_text, el, label + "/Acct/Ccy")
    elif opening or closing:
        currency = (opening or closing).currency  # type: ignore[union-attr]
    elif entries:
        currency = entries[0].currency
    else:
        raise StatementFormatError(r.source, where, "no currency: no Acct/Ccy, no balance and no entry")
    return BankStatement(
        format=f"camt.{msg_type}.001.{version}",
        source=r.source,
        position=where,
        account=account,
        currency=currency,
        message_id=grp.get("message_id"),
        statement_id=r.text(el, "Id"),
        statement_number=r.text(el, "LglSeqNb", "ElctrncSeqNb"),
        sequence_number=r.text(el, "StmtPgntn/PgNb", "RptPgntn/PgNb", "NtfctnPgntn/PgNb"),
        electronic_sequence=r.text(el, "ElctrncSeqNb"),
        legal_sequence=r.text(el, "LglSeqNb"),
        created_at=r.datetime(el, "CreDtTm", label + "/CreDtTm") or grp.get("created_at"),
        period_from=r.datetime(el, "FrToDt/FrDtTm", label + "/FrToDt"),
        period_to=r.datetime(el, "FrToDt/ToDtTm", label + "/FrToDt"),
        account_owner=r.text(el, "Acct/Ownr/Nm", "Acct/Nm"),
        account_bank=r.text(el, "Acct/Svcr/FinInstnId/BIC", "Acct/Svcr/FinInstnId/BICFI"),
        opening_balance=opening,
        closing_balance=closing,
        balances=balances,
        entries=entries,
        info=r.text(el, _INFO[msg_type]),
    )


def parse(data: bytes, *, source: str) -> list[BankStatement]:
    """Every statement/report/notification in a camt file (see ``iter_statements`` for streaming)."""
    return list(iter_statements(io.BytesIO(data), source=source))
