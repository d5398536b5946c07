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

Why validated: a message that breaks its official ISO 20022 schema is not what the bank's standard promises,
and reading it would mean guessing. The XSD of the document's namespace (``camt.05x.001.vv`` -> ``xsd/
camt.05x.001.vv.xsd``, vendored, see ``xsd/README.md``) is compiled once per process and handed to
``iterparse(schema=...)``, so validation streams with the parse and memory stays flat. The rule:

* a version with a vendored XSD (camt.052/053/054 .001.01 to .001.08) is validated strictly: the first schema
  error refuses the file with one line naming it, the line and the error (``f.xml: line 12: schema
  camt.053.001.02: Element 'Bal': Missing child element(s). Expected is ( Amt ).``). All genkgo sample files
  that genkgo reads are schema-valid, so no "report only" mode is needed; the one it refuses
  (``camt053.v2.wrong.xml``) fails its schema too;
* a namespace with no vendored XSD (e.g. .001.09 and later) is read as before, unvalidated, not refused;
* where the reader's own check refuses the same statement (bad decimal separator, unknown currency, no
  ``Stmt``), its wording wins: libxml2 reports schema errors while it parses ahead of the events, so a
  pending schema error is raised at the end of the record it falls in (or of the input), after the checks
  of that record's entries, and no statement with a schema error is ever yielded;
* a broken XML wins over a schema error: with a schema plugged in libxml2 stops silently at a fatal parse
  error (no exception, or "no element found" with no line), so the root's end event is watched and, before
  a file is refused for its schema or when its root never closed, the input is parsed again, tree-less and
  without the schema, to name the well-formedness error and its line (only refused files pay for this);
  a wrong element among the root's children (``Junk`` after the statements) also wins;
* the errors read are the iterparse's own ``error_log`` (lxml's thread-wide log keeps entries of earlier
  parses); the line of a schema error is found when libxml2 first reports it, by re-validating the part of
  the tree still in memory, else the line of the last element event seen;
* schemas are loaded with ``no_network=True`` and a vendored XSD that imports or includes another file is
  refused, so validation can never reach the network; ``xsi:schemaLocation`` in a message is ignored.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from lxml import etree

from canonical_model.bank_statement import (
    Balance,
    BankStatement,
    StatementEntry,
    TransactionDetail,
    from_validated,
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


_XSD_DIR = Path(__file__).with_name("xsd")
_XS = "{http://www.w3.org/2001/XMLSchema}"


def load_schema(path: Path) -> etree.XMLSchema:
    """Compile one XSD with a parser that reaches no network and expands no entity; refuse one that loads
    another schema (the vendored camt XSDs are self-contained, so an import can only be a way out)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    doc = etree.parse(str(path), parser)
    for el in doc.iter(f"{_XS}import", f"{_XS}include", f"{_XS}redefine", f"{_XS}override"):
        if el.get("schemaLocation") is not None:
            raise StatementSecurityError(
                str(path),
                f"line {el.sourceline}",
                f"schema {etree.QName(el).localname}s {el.get('schemaLocation')!r}; camt schemas are "
                "self-contained and are never allowed to load another file or URL",
            )
    return etree.XMLSchema(doc)


@lru_cache(maxsize=64)
def _schema(name: str) -> etree.XMLSchema | None:
    """The compiled official XSD for ``camt.05x.001.vv``, or None when none is vendored (read unvalidated)."""
    path = _XSD_DIR / f"{name}.xsd"
    return load_schema(path) if path.is_file() else None


def _head_namespace(head: bytes) -> str | None:
    """Namespace of the root element, read from the start of the file before the streamed parse begins."""
    pull = etree.XMLPullParser(
        events=("start",), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        for i in range(0, len(head), 4096):
            pull.feed(head[i : i + 4096])
            for _ev, el in pull.read_events():
                return etree.QName(el).namespace
    except etree.XMLSyntaxError:
        for _ev, el in pull.read_events():
            return etree.QName(el).namespace
    return None


def _only_schema_errors(log: Any) -> bool:
    """The parse failed only because the document is invalid, not because the XML is broken."""
    errors = [x for x in log if x.level_name in ("ERROR", "FATAL")]
    return bool(errors) and all(x.domain_name == "SCHEMASV" for x in errors)


def _schema_message(msg: str) -> str:
    """libxml2's message without the namespace on every element name: one readable line."""
    return " ".join(re.sub(r"\{[^}]*\}", "", msg).split())


def _schema_error_line(schema: etree.XMLSchema, root: Any, msg: str) -> int | None:
    """Streaming validation reports no line; validating the part of the tree still in memory (the open
    record and what libxml2 built ahead, which holds the offending element) finds it by its message."""
    if root is None:
        return None
    snapshot = etree.ElementTree(root.__copy__())
    schema.validate(snapshot)
    for err in schema.error_log:
        if err.message == msg and err.line:
            return err.line
    return None


class _Discard:
    """A parser target that builds nothing: libxml2 still checks every byte for well-formedness."""

    def close(self) -> None:
        return None


def _not_wellformed(fp: IO[bytes], start: int | None, source: str) -> StatementFormatError | None:
    """The well-formedness error of the whole input, found by a second, tree-less pass from ``start``.

    With a schema plugged in, libxml2 loses its fatal parse errors (a truncated file simply stops producing
    events, a tag mismatch becomes "no element found" with no line), so before a file is refused for its
    schema, or when its root element never closed, the bytes are parsed again without the schema. Only
    refused files pay for it; memory stays flat (no tree). None when the input is well-formed or cannot
    be re-read (not seekable)."""
    if start is None:
        return None
    try:
        fp.seek(start)
    except (OSError, ValueError, AttributeError):
        return None
    parser = etree.XMLParser(
        target=_Discard(), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        while chunk := fp.read(1 << 16):
            parser.feed(chunk)
        parser.close()
    except etree.XMLSyntaxError as e:
        line = e.position[0] if e.position and e.position[0] else getattr(e, "lineno", None)
        return StatementFormatError(
            source, f"line {line}" if line else None, f"XML is not well-formed (truncated?): {e.msg}"
        )
    return None


def _tell(fp: IO[bytes]) -> int | None:
    try:
        return fp.tell() if fp.seekable() else None
    except (OSError, ValueError, AttributeError):
        return None


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
        return _date_or_datetime(self, node, label, self.text(node, "Dt"), self.text(node, "DtTm"))

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


# Only these elements reach Python as events; the rest of the tree is built by libxml2 alone and read from
# the Ntry subtree directly. Depth and namespace are checked on each event (the wildcard also matches
# other namespaces), so the rules are those of a full start/end walk.
_EVENT_TAGS = ("{*}Ntry", "{*}Stmt", "{*}Rpt", "{*}Ntfctn", "{*}GrpHdr")
# when validating, the root's own end event also comes: libxml2 with a schema plugged in does not raise on a
# truncated file, it just stops, so a root that never closed is how truncation is seen
_EVENT_TAGS_VALIDATED = (*_EVENT_TAGS, "{*}Document")


def iter_statements(fp: IO[bytes], *, source: str) -> Iterator[BankStatement]:
    """Stream statements from a camt.052/053/054 file object, one at a time, memory flat."""
    start = _tell(fp)
    head = fp.read(_HEAD_BYTES)
    if not head.strip():
        raise StatementFormatError(source, "line 1", "file is empty")
    _refuse_dtd(head, source)
    m = _NS_RE.fullmatch(_head_namespace(head) or "")
    schema_name = f"camt.{m.group(1)}.001.{m.group(2)}" if m else ""
    schema = _schema(schema_name) if m else None
    pending: str | None = None  # first schema error reported by libxml2, raised at the end of its record
    pending_line: int | None = None
    ctx = etree.iterparse(
        _Prefixed(head, fp),
        events=("start", "end"),
        tag=_EVENT_TAGS if schema is None else _EVENT_TAGS_VALIDATED,
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
        schema=schema,
    )

    def schema_error() -> StatementFormatError:
        """The pending schema error, unless something the reader says better comes first: a broken XML
        anywhere in the input (well-formedness wins), then a wrong element among the root's children."""
        wf = _not_wellformed(fp, start, source)
        if wf is not None:
            return wf
        if root is not None and r is not None:
            _check_containers(root, 0, r.ns, msg_type, source)
        line = pending_line or _schema_error_line(schema, root, pending) or last_line  # type: ignore[arg-type]
        return StatementFormatError(
            source,
            f"line {line}" if line else None,
            f"schema {schema_name}: {_schema_message(pending or '')}",
        )

    def own_log() -> list[Any]:
        """This parse's own errors (never the thread's shared log, which keeps entries of earlier parses)."""
        return [x for x in ctx.error_log if x.level_name in ("ERROR", "FATAL")]

    root: Any = None
    r: _Reader | None = None
    msg_type = version = ""
    rec_tag = ntry_tag = ""
    paths: _Paths | None = None
    checked = 0  # children of the root already checked to be the message container
    open_rec: Any = None  # the record (depth 2) being read
    grp: dict[str, Any] = {}
    entries: list[StatementEntry] = []
    rec_index = 0
    n_records = 0
    last_line: int | None = None  # line of the last element event: the fallback place of a schema error
    root_closed = schema is None  # without a schema libxml2 raises on truncation itself
    try:
        for event, el in ctx:
            last_line = el.sourceline or last_line
            if r is None:
                root = el
                while (up := root.getparent()) is not None:
                    root = up
                msg_type, version, ns = _root(root, source)
                r = _Reader(ns, source)
                rec_tag = f"{{{ns}}}{_RECORD[msg_type]}"
                ntry_tag = f"{{{ns}}}Ntry"
                paths = _paths(ns)
            if schema is not None and pending is None and ctx.error_log:
                log = own_log()
                if log:
                    # find the line now: the offending element is in the tree libxml2 built ahead, and
                    # entries are removed from it as they are read
                    pending = log[0].message
                    pending_line = _schema_error_line(schema, root, pending) or last_line
            if el is root:
                root_closed = event == "end"
                continue
            tag = el.tag
            if event == "end" and tag == ntry_tag and open_rec is not None and el.getparent() is open_rec:
                # the usual event: an entry of the open record (its container was checked at the record start)
                label = f"{_RECORD[msg_type]}[{rec_index}]/Ntry[{len(entries) + 1}]"
                entries.append(_entry(r, el, label, paths))  # type: ignore[arg-type]
                open_rec.remove(el)  # keep memory flat
                continue
            depth, top = _position(el)
            if top is not None:
                # libxml2 builds the tree ahead of the events: check only root children started before ``el``
                checked = _check_containers(root, checked, r.ns, msg_type, source, upto=top)
            if event == "end":
                if tag == ntry_tag:
                    if depth == 3:
                        label = f"{_RECORD[msg_type]}[{rec_index}]/Ntry[{len(entries) + 1}]"
                        entries.append(_entry(r, el, label, paths))  # type: ignore[arg-type]
                        el.getparent().remove(el)
                elif depth == 2:
                    if tag == rec_tag:
                        open_rec = None
                        n_records += 1
                        stmt = _record(r, el, msg_type, version, rec_index, grp, entries)
                        if pending is not None:
                            raise schema_error()
                        stmt.balance_check = checks.balance_check(stmt)
                        entries = []
                        el.getparent().remove(el)
                        yield stmt
                    elif etree.QName(el).localname == "GrpHdr":
                        grp = {
                            "message_id": r.text(el, "MsgId"),
                            "created_at": r.datetime(el, "CreDtTm", "GrpHdr/CreDtTm"),
                        }
            elif depth == 2 and tag == rec_tag:
                rec_index += 1
                entries = []
                open_rec = el
    except etree.XMLSyntaxError as e:
        if r is None:
            _check_head_elements(head, source)
        else:
            _check_containers(root, checked, r.ns, msg_type, source)
        if schema is not None:
            wf = _not_wellformed(fp, start, source)
            if wf is not None:
                raise wf from None
            log = own_log()
            invalid = [x.message for x in log if x.domain_name == "SCHEMASV"]
            if (pending or invalid) and (start is not None or _only_schema_errors(log)):
                # well-formed (checked above, or only schema errors logged), only invalid: libxml2 raises
                # schema errors when the input closes
                pending = pending or invalid[0]
                if r is not None and n_records == 0:
                    _no_records(msg_type, source)
                raise schema_error() from None
        line = e.position[0] if e.position and e.position[0] else getattr(e, "lineno", None)
        raise StatementFormatError(
            source, f"line {line}" if line else None, f"XML is not well-formed (truncated?): {e.msg}"
        ) from None
    if not root_closed:
        # a schema plugged in makes libxml2 stop silently at a fatal parse error: say what the bytes break
        wf = _not_wellformed(fp, start, source)
        raise wf or StatementFormatError(
            source,
            f"line {last_line}" if last_line else None,
            "XML is not well-formed (truncated?): the input ends before the root element is closed",
        )
    if r is None:
        root = ctx.root
        if root is None:
            raise StatementFormatError(source, "line 1", "no XML root element")
        msg_type, version, ns = _root(root, source)
        r = _Reader(ns, source)
    _check_containers(root, checked, r.ns, msg_type, source)
    if n_records == 0:
        _no_records(msg_type, source)
    if pending is not None:
        raise schema_error()


def _no_records(msg_type: str, source: str) -> None:
    raise StatementFormatError(
        source,
        _CONTAINER[msg_type],
        f"the message has no {_RECORD[msg_type]} element: it carries no "
        f"{'statement' if msg_type == '053' else 'report' if msg_type == '052' else 'notification'}",
    )


def _position(el: Any) -> tuple[int, Any]:
    """(depth, the root child that contains ``el`` or is ``el``; None for the root itself)."""
    depth = 0
    top = None
    up = el.getparent()
    while up is not None:
        depth += 1
        top = el
        el = up
        up = el.getparent()
    return depth, top


def _check_containers(root: Any, checked: int, ns: str, msg_type: str, source: str, upto: Any = None) -> int:
    """Refuse the first child of the root, from index ``checked`` up to ``upto`` (or the last), that is not
    the message container; return how many children are now checked."""
    end = len(root) if upto is None else root.index(upto) + 1
    for el in root[checked:end]:
        if not _is_container(el, ns, msg_type):
            raise StatementFormatError(
                source,
                f"line {el.sourceline}",
                f"element {etree.QName(el).localname} where camt.{msg_type} requires {_CONTAINER[msg_type]}",
            )
    return max(checked, end)


def _check_head_elements(head: bytes, source: str) -> None:
    """The root and container checks on the start of the file, for XML that breaks before any record.

    Which element is wrong is a clearer reason than where the XML breaks, and it is what a reader that
    stops at each element would report first.
    """
    depth = -1
    msg_type = ns = ""
    try:
        for event, el in etree.iterparse(
            io.BytesIO(head),
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            load_dtd=False,
            remove_comments=True,
            remove_pis=True,
        ):
            if event == "end":
                depth -= 1
                continue
            depth += 1
            if depth == 0:
                msg_type, _, ns = _root(el, source)
            elif depth == 1 and not _is_container(el, ns, msg_type):
                raise StatementFormatError(
                    source,
                    f"line {el.sourceline}",
                    f"element {etree.QName(el).localname} where camt.{msg_type} requires "
                    f"{_CONTAINER[msg_type]}",
                )
    except etree.XMLSyntaxError:
        return


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


class _Paths:
    """What is read below an ``Ntry`` and a ``TxDtls``, as tries keyed by namespaced tag.

    Each node is (mode, children, path). Mode 0 only leads further down; 1 keeps the text of the first
    element at ``path`` (whitespace collapsed, None if blank: what ``_Reader.text`` reads); 2 keeps the first
    element itself; 3 keeps the first element and reads below it only (a ``find`` then relative reads);
    4 collects every occurrence (``findall``). Modes 0-2 descend into every occurrence, which is ``find``
    semantics for a multi-step path. One walk of the subtree answers all look-ups from a dict.
    """

    def __init__(self, ns: str) -> None:
        self.ntry = _trie(ns, _NTRY_PATHS, {"Amt": 2, "BookgDt": 3, "ValDt": 3, "NtryDtls/TxDtls": 4})
        self.tx = _trie(ns, _TX_PATHS, {"Amt": 2, "AmtDtls/TxAmt/Amt": 2, "RmtInf/Ustrd": 4})


def _btc_paths() -> list[str]:
    return ["BkTxCd/Domn/Cd", "BkTxCd/Domn/Fmly/Cd", "BkTxCd/Domn/Fmly/SubFmlyCd", "BkTxCd/Prtry/Cd"]


_NTRY_PATHS = [
    "Amt",
    "CdtDbtInd",
    "Sts",
    "Sts/Cd",
    "Sts/Prtry",
    "BookgDt/Dt",
    "BookgDt/DtTm",
    "ValDt/Dt",
    "ValDt/DtTm",
    "NtryDtls/TxDtls",
    "NtryRef",
    "AddtlNtryInf",
    "RvslInd",
    "AcctSvcrRef",
    *_btc_paths(),
]
_TX_PATHS = [
    "Amt",
    "AmtDtls/TxAmt/Amt",
    "RmtInf/Ustrd",
    "RmtInf/Strd/AddtlRmtInf",
    "RmtInf/Strd/CdtrRefInf/Ref",
    "AddtlTxInf",
    *[f"Refs/{k}" for k in ("EndToEndId", "MndtId", "InstrId", "TxId", "UETR", "AcctSvcrRef")],
    *_btc_paths(),
]
for _role in ("Dbtr", "Cdtr"):
    for _party in (_role, f"Ultmt{_role}"):
        _TX_PATHS += [f"RltdPties/{_party}/Nm", f"RltdPties/{_party}/Pty/Nm"]
    for _base in (f"RltdPties/{_role}", f"RltdPties/{_role}/Pty"):
        _TX_PATHS += [f"{_base}/Id/OrgId/{k}" for k in ("BICOrBEI", "AnyBIC", "Othr/Id")] + [
            f"{_base}/Id/PrvtId/Othr/Id"
        ]
    _TX_PATHS += [f"RltdPties/{_role}Acct/Id/{k}" for k in ("IBAN", "Othr/Id", "PrtryAcct/Id", "BBAN")]
    _TX_PATHS += [f"RltdAgts/{_role}Agt/FinInstnId/{k}" for k in ("BIC", "BICFI", "ClrSysMmbId/MmbId", "Nm")]


def _trie(ns: str, paths: list[str], modes: dict[str, int]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    wanted = set(paths)
    for path in paths:
        node = root
        steps = path.split("/")
        for i, step in enumerate(steps):
            sub_path = "/".join(steps[: i + 1])
            mode = modes.get(sub_path, 1 if sub_path in wanted else 0)
            node = node.setdefault(f"{{{ns}}}{step}", (mode, {}, sub_path))[1]
    return root


@lru_cache(maxsize=64)
def _paths(ns: str) -> _Paths:
    return _Paths(ns)


def _walk(el: Any, trie: dict[str, Any], out: dict[str, Any]) -> None:
    for child in el:
        node = trie.get(child.tag)
        if node is None:
            continue
        mode, sub, path = node
        if mode == 1:
            if path not in out:
                text = child.text
                out[path] = (" ".join(text.split()) or None) if text else None
        elif mode == 2:
            if path not in out:
                out[path] = child
        elif mode == 3:
            if path in out:
                continue
            out[path] = child
        elif mode == 4:
            seen = out.get(path)
            if seen is None:
                out[path] = [child]
            else:
                seen.append(child)
            continue
        if sub:
            _walk(child, sub, out)


def _date(
    r: _Reader, idx: dict[str, Any], name: str, label: str
) -> tuple[dt.date | None, dt.datetime | None]:
    node = idx.get(name)
    if node is None:
        return None, None
    return _date_or_datetime(r, node, label, idx.get(name + "/Dt"), idx.get(name + "/DtTm"))


def _date_or_datetime(
    r: _Reader, node: Any, label: str, d: str | None, t: str | None
) -> tuple[dt.date | None, dt.datetime | None]:
    """camt's DateAndDateTimeChoice: <Dt> or <DtTm>, ISO 8601 either way."""
    try:
        if d:
            return dt.date.fromisoformat(d[:10]), None
        if t:
            stamp = dt.datetime.fromisoformat(t)
            return stamp.date(), stamp
    except ValueError:
        raise StatementValueError(
            r.source, r.where(node, label), f"date {d or t!r} is not an ISO 8601 date"
        ) from None
    return None, None


def _btc(idx: dict[str, Any]) -> tuple[str | None, str | None]:
    get = idx.get
    code = "/".join([x for x in (get(_DOM), get(_FAM), get(_SUB)) if x]) or None
    return code, get(_PRTRY)


_DOM, _FAM, _SUB, _PRTRY = _btc_paths()
_STS = ("Sts/Cd", "Sts/Prtry", "Sts")


def _first(get: Any, paths: tuple[str, ...]) -> str | None:
    for p in paths:
        v = get(p)
        if v:
            return v
    return None


def _role_paths(role: str) -> tuple[tuple[str, ...], ...]:
    """(name, account, agent, party id) look-up paths of the counterparty, in order of preference."""
    pty = f"RltdPties/{role}"
    agt = f"RltdAgts/{role}Agt/FinInstnId"
    ids: list[str] = []
    for base in (pty, f"{pty}/Pty"):
        ids += [f"{base}/Id/OrgId/BICOrBEI", f"{base}/Id/OrgId/AnyBIC", f"{base}/Id/OrgId/Othr/Id"]
        ids.append(f"{base}/Id/PrvtId/Othr/Id")
    return (
        (f"RltdPties/Ultmt{role}/Nm", f"RltdPties/Ultmt{role}/Pty/Nm", f"{pty}/Nm", f"{pty}/Pty/Nm"),
        tuple(f"{pty}Acct/Id/{k}" for k in ("IBAN", "Othr/Id", "PrtryAcct/Id", "BBAN")),
        tuple(f"{agt}/{k}" for k in ("BIC", "BICFI", "ClrSysMmbId/MmbId", "Nm")),
        tuple(ids),
    )


_ROLE_PATHS = {True: _role_paths("Dbtr"), False: _role_paths("Cdtr")}  # by "entry is a credit"
_TX_ID = ("Refs/TxId", "Refs/UETR")
_TX_REMIT = ("RmtInf/Strd/AddtlRmtInf", "AddtlTxInf")


_DETAIL_FIELDS_SET = frozenset(
    [
        "amount",
        "currency",
        "end_to_end_id",
        "mandate_id",
        "instruction_id",
        "transaction_id",
        "bank_reference",
        "counterparty_name",
        "counterparty_account",
        "counterparty_bank",
        "counterparty_id",
        "remittance",
        "creditor_reference",
        "bank_transaction_code",
    ]
)
_ENTRY_FIELDS_SET = frozenset(
    [
        "amount",
        "currency",
        "booking_date",
        "value_date",
        "booking_time",
        "reversal",
        "status",
        "bank_reference",
        "customer_reference",
        "end_to_end_id",
        "mandate_id",
        "counterparty_name",
        "counterparty_account",
        "counterparty_bank",
        "remittance",
        "bank_transaction_code",
        "details",
        "extra",
        "source",
        "position",
    ]
)


def _detail(r: _Reader, tx: Any, label: str, credit: bool, trie: dict[str, Any]) -> TransactionDetail:
    idx: dict[str, Any] = {}
    _walk(tx, trie, idx)
    get = idx.get
    amt_el = get("Amt")
    if amt_el is None:
        amt_el = get("AmtDtls/TxAmt/Amt")
    amount = currency = None
    if amt_el is not None:
        amount, currency = r.amount(amt_el, label + "/Amt")
    ustrd = [" ".join(u.text.split()) for u in get("RmtInf/Ustrd", ()) if u.text and u.text.strip()]
    code, prtry = _btc(idx)
    names, accounts, agents, ids = _ROLE_PATHS[credit]
    return from_validated(
        TransactionDetail,
        {
            "amount": amount,
            "currency": currency,
            "end_to_end_id": _noref(get("Refs/EndToEndId")),
            "mandate_id": get("Refs/MndtId"),
            "instruction_id": get("Refs/InstrId"),
            "transaction_id": _first(get, _TX_ID),
            "bank_reference": get("Refs/AcctSvcrRef"),
            "counterparty_name": _first(get, names),
            "counterparty_account": _first(get, accounts),
            "counterparty_bank": _first(get, agents),
            "counterparty_id": _first(get, ids),
            "remittance": " ".join(ustrd) or _first(get, _TX_REMIT),
            "creditor_reference": get("RmtInf/Strd/CdtrRefInf/Ref"),
            "bank_transaction_code": code or prtry,
        },
        _DETAIL_FIELDS_SET,
    )


def _noref(v: str | None) -> str | None:
    return None if v in (None, "NOTPROVIDED") else v


def _entry(r: _Reader, el: Any, label: str, paths: _Paths) -> StatementEntry:
    idx: dict[str, Any] = {}
    _walk(el, paths.ntry, idx)
    where = r.where(el, label)
    amt_el = idx.get("Amt")
    if amt_el is None:
        raise StatementFormatError(r.source, where, "entry has no Amt")
    amount, currency = r.amount(amt_el, label + "/Amt")
    ind = idx.get("CdtDbtInd")
    if ind not in ("CRDT", "DBIT"):
        raise StatementFormatError(r.source, where, f"CdtDbtInd is {ind!r}; expected CRDT or DBIT")
    credit = ind == "CRDT"
    sts_raw = _first(idx.get, _STS)
    status = _STATUS.get(sts_raw or "BOOK")
    if status is None:
        raise StatementFormatError(
            r.source, where, f"entry status {sts_raw!r} is not BOOK, PDNG, INFO or FUTR"
        )
    booking_date, booking_time = _date(r, idx, "BookgDt", label + "/BookgDt")
    value_date, _ = _date(r, idx, "ValDt", label + "/ValDt")
    code, prtry = _btc(idx)
    tx_trie = paths.tx
    details = [
        _detail(r, tx, f"{label}/TxDtls[{i}]", credit, tx_trie)
        for i, tx in enumerate(idx.get("NtryDtls/TxDtls", ()), start=1)
    ]
    one = details[0] if len(details) == 1 else None
    extra: dict[str, str] = {}
    if prtry:
        extra["proprietary_code"] = prtry
    v = idx.get("NtryRef")
    if v:
        extra["entry_ref"] = v
    v = idx.get("AddtlNtryInf")
    if v:
        extra["additional_info"] = v
    if len(details) > 1:
        extra["batch_count"] = str(len(details))
    remittance = (one.remittance if one else None) or extra.get("additional_info")
    return from_validated(
        StatementEntry,
        {
            "amount": amount if credit else -amount,
            "currency": currency,
            "booking_date": booking_date,
            "value_date": value_date,
            "booking_time": booking_time,
            "reversal": (idx.get("RvslInd") or "").lower() in ("true", "1"),
            "status": status,
            "bank_reference": idx.get("AcctSvcrRef") or (one.bank_reference if one else None),
            "customer_reference": one.instruction_id if one else None,
            "end_to_end_id": one.end_to_end_id if one else None,
            "mandate_id": one.mandate_id if one else None,
            "creditor_id": None,
            "counterparty_name": one.counterparty_name if one else None,
            "counterparty_account": one.counterparty_account if one else None,
            "counterparty_bank": one.counterparty_bank if one else None,
            "remittance": remittance,
            "bank_transaction_code": code or prtry,
            "transaction_type": None,
            "balance_after": None,
            "details": details,
            "extra": extra,
            "source": r.source,
            "position": where,
        },
        _ENTRY_FIELDS_SET,
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
