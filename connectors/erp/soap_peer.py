"""A local SOAP ERP (spyne) that serves the seeded sample ERP's vouchers through the voucher query contract.

Why: the SOAP connector (connectors/erp/soap.py) must be exercised over real HTTP and real SOAP envelopes,
against a server that keeps sessions, answers faults and can be made to fail, without an ERP installation.
The contract (generic, no vendor's: see soap.py) is defined here as spyne models; its WSDL is vendored at
connectors/erp/wsdl/voucher_query_service.wsdl (`--print-wsdl` writes it; a test checks the two agree).

Endpoints:
    POST /erp/VoucherQueryService          SOAP 1.1, document/literal wrapped (Login, QueryVouchers, GetVouchers)
    GET  /erp/VoucherQueryService?wsdl     the WSDL
Test-only endpoints:
    GET  /_peer/stats    {"calls": {operation: count}, "logins": n, "refused_logins": n}
    POST /_peer/faults   {"unavailable_next": n, "retry_after": "s", "malformed_next": n, "doctype_next": n,
                          "server_fault_next": n, "entity_file": path, "expire_sessions": true,
                          "session_expired_next": n}
         unavailable: HTTP 503 (with Retry-After when given) for the next n SOAP calls; server_fault: HTTP
         500 with a SOAP fault of code Server (how SOAP stacks report an internal error); malformed: a 200
         answer that is not well-formed XML; doctype: a 200 answer declaring an external entity on
         `entity_file` (what a defused client must refuse); expire_sessions: every session ends now;
         session_expired_next: the next n session checks fail even for a fresh session.

The data: the sample ERP's SQLite file (`--data`, seeded by connectors/erp/sample_erp/seed.py) and its
attachment folder (`--attachments`, default: `attachments` beside the file). Attachment content travels
base64 in the answer with its SHA-256; a file the ERP has lost (or that lies outside the folder) travels
as metadata with no content, which is what a real ERP does with a broken file link.

The password comes from the environment variable named by --secret-env (never argv); nothing here prints
it, and spyne's own logging of expected client faults is off.

Run: python -m connectors.erp.soap_peer --data erp.sqlite --port N --secret-env VAR [--user U]
     [--data-center DC] [--session-ttl S];  python -m connectors.erp.soap_peer --print-wsdl
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from lxml import etree
from spyne import (
    Application,
    Array,
    ByteArray,
    ComplexModel,
    DateTime,
    Decimal,
    Fault,
    Integer32,
    ServiceBase,
    Unicode,
    rpc,
)
from spyne.interface.wsdl import Wsdl11
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from sqlalchemy import select

from connectors.erp.database import DatabaseVoucherStream
from connectors.erp.sample_erp import schema
from connectors.erp.soap import (
    FAULT_AUTHENTICATION,
    FAULT_DATA_CENTER,
    FAULT_SESSION,
    MAX_LIMIT,
    NAMESPACE,
    SERVICE_NAME,
    SERVICE_PATH,
    VENDORED_ADDRESS,
)
from connectors.stream import SourceRecord

Text = Unicode
XSD = "http://www.w3.org/2001/XMLSchema"
Required = Unicode(min_occurs=1, nillable=False)


class VoucherLine(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("lineNo", Integer32),
        ("summary", Text),
        ("accountCode", Text),
        ("accountName", Text),
        ("debit", Decimal),
        ("credit", Decimal),
        ("currency", Text),
        ("exchangeRate", Decimal),
        ("auxCustomer", Text),
        ("auxSupplier", Text),
        ("auxDepartment", Text),
        ("auxEmployee", Text),
        ("auxProject", Text),
    ]


class Attachment(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("id", Text),
        ("fileName", Text),
        ("mimeType", Text),
        ("size", Integer32),
        ("uploadedAt", DateTime),
        ("sha256", Text),  # of `content`; absent with it
        ("content", ByteArray),  # base64Binary; absent when the ERP cannot read its own file
    ]


class Voucher(ComplexModel):
    __namespace__ = NAMESPACE
    _type_info = [
        ("id", Text),
        ("companyCode", Text),
        ("companyName", Text),
        ("bookCode", Text),
        ("fiscalYear", Integer32),
        ("period", Integer32),
        ("voucherWord", Text),
        ("voucherNo", Integer32),
        ("voucherDate", Text),  # as the ERP keeps it (text: real exports carry broken dates)
        ("summary", Text),
        ("currency", Text),
        ("preparer", Text),
        ("reviewer", Text),
        ("poster", Text),
        ("chiefAccountant", Text),
        ("attachmentCount", Integer32),
        ("status", Text),
        ("createdAt", DateTime),
        ("updatedAt", DateTime),  # the change timestamp QueryVouchers orders and filters by
        ("lines", Array(VoucherLine)),
        ("attachments", Array(Attachment)),
    ]


class VoucherQueryService(ServiceBase):
    """The contract's operations; the work is PeerState's (ctx.app.peer), so the WSDL needs no data."""

    @rpc(Required, Required, Required, _returns=Text)
    def Login(ctx, user, password, dataCenter):
        """A session id for the other operations; faults Client.AuthenticationFailed, Client.UnknownDataCenter."""
        return ctx.app.peer.login(user, password, dataCenter)

    @rpc(
        Required,
        DateTime(min_occurs=0),
        Integer32(min_occurs=1, nillable=False, ge=0),
        Integer32(min_occurs=1, nillable=False, ge=1, le=MAX_LIMIT),
        _returns=Array(Voucher),
    )
    def QueryVouchers(ctx, sessionId, changedSince, startRow, limit):
        """Vouchers with updatedAt at or after changedSince (all when absent), by (updatedAt, id), from startRow."""
        return ctx.app.peer.query(sessionId, changedSince, startRow, limit)

    @rpc(Required, Array(Unicode, min_occurs=1, nillable=False), _returns=Array(Voucher))
    def GetVouchers(ctx, sessionId, ids):
        """The current version of the given vouchers, ordered by (updatedAt, id); unknown ids are left out."""
        return ctx.app.peer.get(sessionId, ids or [])


def soap_application(peer: PeerState | None = None) -> Application:
    app = Application(
        [VoucherQueryService],
        tns=NAMESPACE,
        name=SERVICE_NAME,
        in_protocol=Soap11(validator="lxml"),
        out_protocol=Soap11(),
    )
    app.peer = peer  # type: ignore[attr-defined]
    return app


def wsdl_document(address: str = VENDORED_ADDRESS) -> bytes:
    """The contract's WSDL as the peer serves it, with `address` as the service location (the vendored
    copy's placeholder), indented for a readable diff."""
    app = soap_application()
    WsgiApplication(app)  # the server sets the binding's transport (SOAP over HTTP), as when serving
    wsdl = Wsdl11(app.interface)
    wsdl.build_interface_document(address)
    document = etree.fromstring(wsdl.get_interface_document(), etree.XMLParser(remove_blank_text=True))
    return etree.tostring(sorted_schemas(document), pretty_print=True, xml_declaration=True, encoding="UTF-8")


def sorted_schemas(wsdl: etree._Element) -> etree._Element:
    """The WSDL with each schema's top-level components in a fixed order: spyne emits them in set order
    (it changes with PYTHONHASHSEED), and their order means nothing in XML Schema."""
    for schema_element in wsdl.iterfind(f".//{{{XSD}}}schema"):
        children = list(schema_element)
        children.sort(
            key=lambda c: (c.tag != f"{{{XSD}}}import", etree.QName(c).localname, c.get("name", ""))
        )
        schema_element[:] = children
    return wsdl


class PeerState:
    """Sessions, counters and injected faults of one running peer (the WSGI server is threaded)."""

    def __init__(
        self,
        records: DatabaseVoucherStream,
        *,
        user: str,
        password: str,
        data_center: str,
        session_ttl: float,
    ) -> None:
        self.records = records
        self.user, self._password, self.data_center = user, password, data_center
        self.session_ttl = session_ttl
        self.lock = threading.Lock()
        self.sessions: dict[str, float] = {}  # session id → monotonic expiry
        self.calls: Counter[str] = Counter()
        self.logins = self.refused_logins = 0
        self.faults: dict[str, Any] = {}

    # -- the contract ------------------------------------------------------------------------------
    def login(self, user: str, password: str, data_center: str) -> str:
        good = hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
            password.encode(), self._password.encode()
        )
        if not good:
            with self.lock:
                self.refused_logins += 1
            say(f"Login user={user!r}: refused")
            raise Fault(FAULT_AUTHENTICATION, "user name or password refused")
        if data_center != self.data_center:
            say(f"Login user={user!r} dataCenter={data_center!r}: unknown data center")
            raise Fault(FAULT_DATA_CENTER, f"no data center {data_center!r}")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.sessions[token] = time.monotonic() + self.session_ttl
            self.logins += 1
        say(f"Login user={user!r}: session opened ({len(self.sessions)} open)")
        return token

    def query(self, session_id: str, since: Any, start_row: int, limit: int) -> list[Voucher]:
        self._session(session_id)
        v = schema.voucher
        query = select(v.c.id).order_by(v.c.updated_at, v.c.id).offset(start_row).limit(limit)
        if since is not None:
            query = query.where(v.c.updated_at >= _naive(since))  # closed: the boundary row is included
        with self.records.engine.connect() as conn:
            ids = [str(i) for i in conn.execute(query).scalars()]
        return self._vouchers(ids)

    def get(self, session_id: str, ids: Iterable[str]) -> list[Voucher]:
        self._session(session_id)
        return self._vouchers([i for i in ids if i.isdigit()][:MAX_LIMIT])

    def _session(self, session_id: str) -> None:
        with self.lock:
            if self.faults.get("session_expired_next", 0) > 0:
                self.faults["session_expired_next"] -= 1
                expired = True
            else:
                expired = self.sessions.get(session_id, 0.0) < time.monotonic()
            if expired:
                self.sessions.pop(session_id, None)
        if expired:
            raise Fault(FAULT_SESSION, "session expired or unknown: log in again")

    def _vouchers(self, ids: list[str]) -> list[Voucher]:
        return [self._voucher(r) for r in self.records.read_keys(ids)] if ids else []

    def _voucher(self, record: SourceRecord) -> Voucher:
        d = record.data
        return Voucher(
            id=record.key,
            companyCode=d["company_code"],
            companyName=d["company_name"],
            bookCode=d["book_code"],
            fiscalYear=d["fiscal_year"],
            period=d["period"],
            voucherWord=d["voucher_word"],
            voucherNo=d["voucher_no"],
            voucherDate=d["voucher_date"],
            summary=d["summary"],
            currency=d["currency"],
            preparer=d["preparer"],
            reviewer=d["reviewer"],
            poster=d["poster"],
            chiefAccountant=d["chief_accountant"],
            attachmentCount=d["attachment_count"],
            status=d["status"],
            createdAt=d["created_at"],
            updatedAt=d["updated_at"],
            lines=[
                VoucherLine(
                    lineNo=x["line_no"],
                    summary=x["summary"],
                    accountCode=x["account_code"],
                    accountName=x["account_name"],
                    debit=x["debit"],
                    credit=x["credit"],
                    currency=x["currency"],
                    exchangeRate=x["exchange_rate"],
                    auxCustomer=x["aux_customer"],
                    auxSupplier=x["aux_supplier"],
                    auxDepartment=x["aux_department"],
                    auxEmployee=x["aux_employee"],
                    auxProject=x["aux_project"],
                )
                for x in d["lines"]
            ],
            attachments=[_attachment(a) for a in d["attachments"]],
        )

    # -- test controls -----------------------------------------------------------------------------
    def set_faults(self, spec: dict[str, Any]) -> None:
        with self.lock:
            if spec.pop("expire_sessions", False):
                self.sessions.clear()
            self.faults.update(spec)

    def injected(self) -> tuple[str, Any] | None:
        """The fault this SOAP call is to get instead of an answer, if one is pending."""
        with self.lock:
            for name in ("unavailable", "server_fault", "malformed", "doctype"):
                if self.faults.get(f"{name}_next", 0) > 0:
                    self.faults[f"{name}_next"] -= 1
                    return name, self.faults.get("retry_after" if name == "unavailable" else "entity_file")
        return None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "logins": self.logins,
                "refused_logins": self.refused_logins,
                "sessions": len(self.sessions),
            }


def _attachment(item: dict[str, Any]) -> Attachment:
    content = None
    uri = str(item.get("uri") or "")
    if not uri.startswith("refused:"):
        try:
            content = Path(uri).read_bytes()
        except OSError:
            content = None  # the ERP lost the file: metadata only
    return Attachment(
        id=str(item["id"]),
        fileName=item["file_name"],
        mimeType=item["mime_type"],
        size=item["size"],
        uploadedAt=item["uploaded_at"],
        sha256=hashlib.sha256(content).hexdigest() if content is not None else None,
        content=[content] if content is not None else None,
    )


def _naive(value: Any) -> Any:
    """The ERP keeps local times without an offset; a time sent with one is read on its wall clock."""
    return value.replace(tzinfo=None) if getattr(value, "tzinfo", None) else value


def say(line: str) -> None:
    print(f"soap_peer: {line}", flush=True)


SERVER_FAULT = (
    b"<?xml version='1.0' encoding='UTF-8'?><soap11env:Envelope "
    b"xmlns:soap11env='http://schemas.xmlsoap.org/soap/envelope/'><soap11env:Body><soap11env:Fault>"
    b"<faultcode>soap11env:Server</faultcode><faultstring>database is locked</faultstring>"
    b"</soap11env:Fault></soap11env:Body></soap11env:Envelope>"
)
MALFORMED = b"<?xml version='1.0'?><soap11env:Envelope xmlns:soap11env='http://schemas.xmlsoap.org/soap/envelope/'><Body"


def doctype_answer(entity_file: str | None) -> bytes:
    """A SOAP answer whose voucher id is an external entity: a client that resolves it would hand the
    file's content on as data."""
    target = Path(entity_file or "/etc/hostname").resolve().as_uri()
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE e [<!ENTITY leak SYSTEM "{target}">]>\n'
        '<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:tns="{NAMESPACE}"><soap11env:Body><tns:QueryVouchersResponse><tns:QueryVouchersResult>'
        "<tns:Voucher><tns:id>&leak;</tns:id></tns:Voucher>"
        "</tns:QueryVouchersResult></tns:QueryVouchersResponse></soap11env:Body></soap11env:Envelope>"
    ).encode()


class PeerWsgi:
    """Routes /_peer/* to the controls, the service path to spyne (after any injected fault), else 404."""

    def __init__(self, peer: PeerState) -> None:
        self.peer = peer
        self.soap = WsgiApplication(soap_application(peer))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/_peer/stats" and method == "GET":
            return _answer(
                start_response, "200 OK", json.dumps(self.peer.stats()).encode(), "application/json"
            )
        if path == "/_peer/faults" and method == "POST":
            try:
                spec = json.loads(_body(environ) or b"{}")
                assert isinstance(spec, dict)
            except (ValueError, AssertionError):
                return _answer(start_response, "400 Bad Request", b"a JSON object, please", "text/plain")
            self.peer.set_faults(spec)
            return _answer(
                start_response, "200 OK", json.dumps(self.peer.stats()).encode(), "application/json"
            )
        if path != SERVICE_PATH:
            return _answer(start_response, "404 Not Found", b"no such service", "text/plain")
        if method != "POST":
            return self.soap(environ, start_response)  # ?wsdl
        action = environ.get("HTTP_SOAPACTION", "").strip('"') or "?"
        with self.peer.lock:
            self.peer.calls[action] += 1
        fault = self.peer.injected()
        if fault is None:
            return self._logged(action, environ, start_response)
        _body(environ)  # read the request whole before answering instead
        kind, detail = fault
        say(f"{action}: injected {kind}")
        if kind == "unavailable":
            extra = [("Retry-After", str(detail))] if detail is not None else []
            return _answer(start_response, "503 Service Unavailable", b"busy", "text/plain", extra)
        if kind == "server_fault":
            return _answer(
                start_response, "500 Internal Server Error", SERVER_FAULT, "text/xml; charset=utf-8"
            )
        if kind == "malformed":
            return _answer(start_response, "200 OK", MALFORMED, "text/xml; charset=utf-8")
        return _answer(start_response, "200 OK", doctype_answer(detail), "text/xml; charset=utf-8")

    def _logged(self, action: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def starting(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            say(f"{action}: {status}")
            return start_response(status, headers, *exc)

        return self.soap(environ, starting)


def _body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _answer(
    start_response: Callable[..., Any],
    status: str,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    start_response(
        status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *(extra or [])]
    )
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per SOAP call is printed by PeerWsgi instead


def serve(app: Any, port: int) -> int:
    """Bind first, then print the URL, then serve (port 0 picks a free one)."""
    server = _Server(("127.0.0.1", port), _QuietHandler, bind_and_activate=False)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.server_bind()
    server.server_activate()
    server.set_app(app)
    print(f"soap_peer listening on http://127.0.0.1:{server.server_port}{SERVICE_PATH}", flush=True)
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.erp.soap_peer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, help="the sample ERP's SQLite file")
    parser.add_argument("--attachments", type=Path, help="its attachment folder (default: beside --data)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret-env", help="the environment variable holding the password")
    parser.add_argument("--user", default="archive")
    parser.add_argument("--data-center", default="DC01")
    parser.add_argument("--session-ttl", type=float, default=600.0)
    parser.add_argument("--print-wsdl", action="store_true", help="write the contract's WSDL to stdout")
    args = parser.parse_args(argv)
    if args.print_wsdl:
        sys.stdout.buffer.write(wsdl_document())
        return 0
    if not args.data or not args.secret_env:
        parser.error("--data and --secret-env are required")
    password = os.environ.get(args.secret_env, "")
    if not password:
        print(f"soap_peer: environment variable {args.secret_env} is not set or empty", file=sys.stderr)
        return 2
    if not args.data.is_file():
        print(
            f"soap_peer: {args.data} is not a file (seed it with `archive-hub seed-sample-erp`)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("spyne.application.client").setLevel(logging.CRITICAL)  # expected faults, not news
    records = DatabaseVoucherStream(
        "soap-peer",
        f"sqlite:///{args.data.resolve()}",
        args.attachments or args.data.resolve().parent / "attachments",
        system="sample-erp",
    )
    peer = PeerState(
        records,
        user=args.user,
        password=password,
        data_center=args.data_center,
        session_ttl=args.session_ttl,
    )
    return serve(PeerWsgi(peer), args.port)


if __name__ == "__main__":
    raise SystemExit(main())
