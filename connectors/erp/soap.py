"""SOAP voucher source: reads 凭证 with their 分录 and attachments from an ERP's SOAP voucher query service.

The contract is generic (no vendor's), document/literal SOAP 1.1, WSDL vendored at
wsdl/voucher_query_service.wsdl (namespace urn:archive-hub:erp:voucher-query:1):

    Login(user, password, dataCenter) -> sessionId
        faults Client.AuthenticationFailed, Client.UnknownDataCenter
    QueryVouchers(sessionId, changedSince?, startRow, limit <= 1000) -> Voucher[]
        vouchers with updatedAt >= changedSince (closed), ordered by (updatedAt, id), offset paging
    GetVouchers(sessionId, ids) -> Voucher[]          current versions; unknown ids left out
    Voucher: header fields (companyCode ... chiefAccountant, attachmentCount, status, createdAt, updatedAt),
             lines (VoucherLine: lineNo, summary, accountCode, accountName, debit, credit, currency,
             exchangeRate, aux*), attachments (Attachment: id, fileName, mimeType, size, uploadedAt,
             sha256, content base64Binary)
    a session operation answers Client.SessionExpired once its session is gone: log in again.

Why generic: the SOAP ERP whose voucher services are documented in public material is Kingdee EAS
(`EASLogin.login(userName, password, slnName, dcName, language, dbType)` -> WSContext.sessionId, sent
back as a `SessionId` SOAP header in http://login.webservice.bos.kingdee.com; `WSGLWebServiceFacade`
getVoucher/exportVoucher/importVoucher, as Kingdee's community articles and Axis 1.4 stubs in public
repositories show). Its read operations are rpc/encoded (which spyne cannot serve, so no local peer
could speak it), answer bare String[][] whose column order we found nowhere documented, select by
company, year and period with no change timestamp, and carry no attachments. Implementing that from
guesses would be a vendor claim we cannot back; a Kingdee EAS or Yonyou NC adapter belongs beside this
one once its contract can be checked against a real instance. What this contract borrows from the
field: a data center chosen at login (EAS's dcName), session ids that expire, 1000-row pages.

How it is read: the look-back start is a closed boundary; pages restart from the last page's newest
updatedAt, skipping the rows already read at that instant, so offset paging behaves like a keyset (a
voucher changed mid-read moves behind the boundary instead of shifting unread rows past it). Attachment
content is written once, content-addressed, under the work folder (the archive step reads a `uri`);
content that does not match its declared SHA-256, or is missing, becomes a `refused:` uri, which the
archive step quarantines with the reason.

Transport: zeep on a requests Session, the vendored WSDL (nothing is ever fetched to parse it), defused
XML (no DTDs, entities or external references), the service address from `connection.url`. HTTP 429 and
5xx that are not SOAP faults, timeouts and refused connections are TransientSourceError, retried with
backoff honouring Retry-After; a session fault logs in again once; a wrong password is a ConfigError
naming connection.password; an answer that is not XML or not the contract's is a SourceError naming the
source and the operation. The password is sent only inside the Login envelope: it is in no URL, repr,
log line (zeep's envelope logging is bypassed) or error text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as xml_escape

import requests
import zeep
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault
from zeep.helpers import serialize_object

from archive_hub.settings import redact_url
from archive_sink.durability import replace_file
from connectors.errors import ConfigError, SourceError, TransientSourceError
from connectors.http import TooLarge, read_at_most, retry_after
from connectors.stream import Cursor, SourceRecord

if TYPE_CHECKING:
    from archive_hub.sources import SourceConfig

NAMESPACE = "urn:archive-hub:erp:voucher-query:1"
SERVICE_NAME = "VoucherQueryService"
SERVICE_PATH = "/erp/VoucherQueryService"
VENDORED_ADDRESS = f"http://localhost{SERVICE_PATH}"  # replaced by connection.url on every client
WSDL_PATH = Path(__file__).parent / "wsdl" / "voucher_query_service.wsdl"
MAX_LIMIT = 1000
FAULT_AUTHENTICATION = "Client.AuthenticationFailed"
FAULT_DATA_CENTER = "Client.UnknownDataCenter"
FAULT_SESSION = "Client.SessionExpired"
CONNECTION_KEYS = {"url", "user", "password", "data_center", "timeout"}

ZEEP_SETTINGS = zeep.Settings(
    strict=True,
    forbid_dtd=True,
    forbid_entities=True,
    forbid_external=True,
    # Attachment content travels base64 in the answer, and without huge-tree mode lxml refuses a text node
    # over 10 MB: an 8 MB scanned receipt would fail its page on every run (found in review). DTDs and
    # entities stay forbidden; the answer's size is capped by the transport instead (MAX_ANSWER_BYTES).
    xml_huge_tree=True,
)
MAX_ANSWER_BYTES = 512 * 1024 * 1024  # one answer held in memory; a smaller batch_size asks for less


class _Transport(zeep.Transport):
    """zeep's transport without its envelope logging (Login carries the password), turning 429/5xx answers
    that are not SOAP faults, timeouts and dropped connections into TransientSourceError."""

    def post(self, address: str, message: Any, headers: dict[str, str]) -> requests.Response:
        origin = redact_url(f"{urlsplit(address).scheme}://{urlsplit(address).netloc}")
        try:
            response = self.session.post(
                address, data=message, headers=headers, timeout=self.operation_timeout, stream=True
            )
            response._content = read_at_most(response, MAX_ANSWER_BYTES)  # what zeep reads as .content
        except TooLarge:
            raise SourceError(
                f"the answer from {origin} is larger than {MAX_ANSWER_BYTES // 2**20} MiB: "
                "lower the source's batch_size so a page carries fewer attachments"
            ) from None
        except requests.Timeout:
            raise TransientSourceError(f"no answer within {self.operation_timeout:g} s") from None
        except requests.exceptions.SSLError:  # a ConnectionError too, but trying again cannot mend it
            raise _NoService(
                f"TLS with {origin} failed: its certificate is not trusted or not its own"
            ) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            reason = type(exc.__cause__ or exc).__name__
            raise TransientSourceError(f"cannot connect to {origin} ({reason})") from None
        except requests.RequestException as exc:
            raise SourceError(f"{type(exc).__name__}: {origin} cannot be called") from None
        status = response.status_code
        xml = "xml" in response.headers.get("Content-Type", "")
        if status == 429 or status in (502, 503, 504) or (status >= 500 and not xml):
            raise TransientSourceError(f"HTTP {status}", retry_after(response.headers.get("Retry-After")))
        if status >= 400 and not xml:
            raise _NoService(f"HTTP {status} from {origin}{urlsplit(address).path}: no SOAP service there")
        return response


class _NoService(SourceError):
    """connection.url is wrong: the address answers, but not with SOAP, or its TLS certificate is refused."""


class SoapVoucherStream:
    name = "vouchers"
    primary_key = ("id",)

    def __init__(
        self,
        source_id: str,
        url: str,
        user: str,
        password: str,
        data_center: str,
        work_dir: Path,
        *,
        system: str = "soap-erp",
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source_id, self.url, self.user, self.data_center = source_id, url, user, data_center
        self._password = password
        self.system = system
        self.work_dir = Path(work_dir)
        self.attempts, self.backoff, self.sleep = max(1, attempts), backoff, sleep
        self.retries = 0  # tries repeated after a transient failure (run summaries, tests)
        self.logins = 0
        self._session_id: str | None = None
        transport = _Transport(session=requests.Session(), timeout=timeout, operation_timeout=timeout)
        client = zeep.Client(str(WSDL_PATH), transport=transport, settings=ZEEP_SETTINGS)
        self._service = client.create_service(f"{{{NAMESPACE}}}{SERVICE_NAME}", url)
        self._ids_type = client.get_type(f"{{{NAMESPACE}}}stringArray")

    def __repr__(self) -> str:
        return f"SoapVoucherStream({self.source_id}, {redact_url(self.url)}, user={self.user!r})"

    def check(self) -> None:
        self._session_id = None
        self._call("QueryVouchers", None, 0, 1)

    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        """Pages in (updatedAt, id) order, each asked from the newest instant of the one before.

        What was read at that instant is recognised by id, never counted past: a voucher read there and
        edited meanwhile moves behind the rest, and a skip by count would then pass over one never read
        (seen in review, and lost for good once the cursor moved on). Only an instant longer than a page
        is paged by startRow, one row overlapping: the last row read must come back first, or a row of
        that instant moved and the instant is read again from its start (the ids drop what was read).
        """
        limit = max(2, min(batch_size, MAX_LIMIT))  # the overlap needs room for one new row a page
        anchor = cursor.changed_at - lookback if cursor else None
        seen: set[str] = set()  # ids read whose updatedAt equals `anchor`
        start, last_key = 0, ""
        while True:
            page = self._vouchers(self._call("QueryVouchers", anchor, start, limit), "QueryVouchers", anchor)
            if start and (not page or page[0].key != last_key):
                start = 0  # a row of the anchor instant moved: read the instant again, dropping what was read
                continue
            fresh = [r for r in page if r.key not in seen or r.changed_at != anchor]
            if fresh:
                yield fresh
            if len(page) < limit:
                return
            newest = page[-1].changed_at
            at_newest = {r.key for r in page if r.changed_at == newest}
            if newest == anchor:  # the whole page is one instant: on by startRow, one row overlapping
                seen |= at_newest
                start, last_key = start + len(page) - 1, page[-1].key
            else:
                anchor, seen, start = newest, at_newest, 0

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        found: list[SourceRecord] = []
        for start in range(0, len(keys), MAX_LIMIT):
            ids = self._ids_type(string=[str(k) for k in keys[start : start + MAX_LIMIT]])
            found += self._vouchers(self._call("GetVouchers", ids), "GetVouchers", None)
        return found

    # -- calls -------------------------------------------------------------------------------------
    def _call(self, operation: str, *args: Any) -> Any:
        """One session operation: logs in when there is no session, and once more when the session
        has ended; transient failures are retried."""
        relogged = False
        while True:
            if self._session_id is None:
                self._session_id = self._login()
            try:
                return self._retried(operation, self._session_id, *args)
            except Fault as exc:
                if _code(exc) != FAULT_SESSION:
                    raise self._fault(operation, exc) from None
                self._session_id = None
                if relogged:
                    raise SourceError(
                        f"{self.source_id}: {operation}: the session ended again right after a new Login "
                        f"(SOAP fault {FAULT_SESSION})"
                    ) from None
                relogged = True

    def _login(self) -> str:
        try:
            session_id = self._retried("Login", self.user, self._password, self.data_center)
        except Fault as exc:
            raise self._fault("Login", exc) from None
        self.logins += 1
        if not isinstance(session_id, str) or not session_id:
            raise SourceError(f"{self.source_id}: Login: the answer carries no session id")
        return session_id

    def _retried(self, operation: str, *args: Any) -> Any:
        where = f"{self.source_id}: {operation}"
        for attempt in range(1, self.attempts + 1):
            try:
                return getattr(self._service, operation)(*args)
            except TransientSourceError as exc:
                if attempt == self.attempts:
                    raise TransientSourceError(f"{where}: {exc} (gave up after {attempt} tries)") from None
                self.retries += 1
                self.sleep(exc.retry_after or self.backoff * 2 ** (attempt - 1))
            except _NoService as exc:
                raise ConfigError(self.source_id, "connection.url", self._scrub(str(exc))) from None
            except SourceError as exc:
                raise SourceError(f"{where}: {self._scrub(str(exc))}") from None
            except Fault as exc:
                # Server: the ERP failed inside (a locked table, a timeout behind it), which another try
                # may not meet; Client faults say what was asked is wrong, and are never retried.
                if not _code(exc).startswith("Server") or attempt == self.attempts:
                    raise
                self.retries += 1
                self.sleep(self.backoff * 2 ** (attempt - 1))
            except (ZeepError, ValueError, TypeError, AttributeError, KeyError) as exc:
                detail = self._scrub(str(exc).split("\n", 1)[0])[:200]
                raise SourceError(
                    f"{where}: the answer is not usable: {type(exc).__name__}: {detail}"
                ) from None
        raise AssertionError("unreachable")

    def _fault(self, operation: str, exc: Fault) -> Exception:
        code, said = _code(exc), self._scrub(str(exc.message or ""))[:200]
        if code == FAULT_AUTHENTICATION:
            return ConfigError(
                self.source_id,
                "connection.password",
                f"the ERP refused user {self.user!r} with this password (SOAP fault {code})",
            )
        if code == FAULT_DATA_CENTER:
            return ConfigError(
                self.source_id, "connection.data_center", f"the ERP has no data center {self.data_center!r}"
            )
        if code.startswith("Server"):
            return TransientSourceError(
                f"{self.source_id}: {operation}: SOAP fault {code}: {said} (gave up after {self.attempts} tries)"
            )
        return SourceError(f"{self.source_id}: {operation}: SOAP fault {code or '?'}: {said}")

    def _scrub(self, text: str) -> str:
        """The password out of a message, also as XML writes it (a fault may quote the envelope)."""
        if not self._password:
            return text
        return text.replace(self._password, "***").replace(xml_escape(self._password), "***")

    # -- answers -----------------------------------------------------------------------------------
    def _vouchers(self, answer: Any, operation: str, since: dt.datetime | None) -> list[SourceRecord]:
        where = f"{self.source_id}: {operation}"
        items = serialize_object(answer, dict) if answer is not None else []
        if not isinstance(items, list):
            raise SourceError(f"{where}: the answer is not a list of vouchers")
        records = [self._record(item, where) for item in items]
        if operation == "QueryVouchers" and not _in_order([r.changed_at for r in records], since):
            raise SourceError(f"{where}: the answer is not ordered by updatedAt from changedSince")
        return records

    def _record(self, item: Any, where: str) -> SourceRecord:
        if (
            not isinstance(item, dict)
            or not item.get("id")
            or not isinstance(item.get("updatedAt"), dt.datetime)
        ):
            raise SourceError(f"{where}: a voucher without id or updatedAt")
        key = str(item["id"])
        data = dict(item)
        data["lines"] = _items(item.get("lines"))
        data["attachments"] = [self._attachment(a) for a in _items(item.get("attachments"))]
        return SourceRecord(self.name, key, item["updatedAt"], data, data["attachments"])

    def _attachment(self, item: dict[str, Any]) -> dict[str, Any]:
        att = dict(item)
        content = att.pop("content", None)
        declared = str(att.get("sha256") or "").lower()
        if content is None:
            att["uri"] = "refused:the ERP sent no content for it (it cannot read its own file)"
            return att
        digest = hashlib.sha256(content).hexdigest()
        if declared and declared != digest:
            att["uri"] = f"refused:its content does not match the SHA-256 the ERP declares ({declared[:16]}…)"
            return att
        path = self.work_dir / digest[:2] / digest
        replace_file(path, content)
        att["uri"] = str(path)
        return att


def _in_order(stamps: list[Any], since: dt.datetime | None) -> bool:
    """Ascending, none before `since` (times with and without a UTC offset mixed cannot be ordered)."""
    try:
        return stamps == sorted(stamps) and not (since is not None and stamps and stamps[0] < since)
    except TypeError:
        return False


def _code(exc: Fault) -> str:
    """The fault code without its namespace prefix (soap11env:Client.SessionExpired → Client.SessionExpired)."""
    code = exc.code if isinstance(exc.code, str) else getattr(exc.code, "localname", "") or ""
    return code.rpartition(":")[2]


def _items(value: Any) -> list[dict[str, Any]]:
    """An array element as a list: zeep gives a wrapper ({"VoucherLine": [...]}) or None."""
    if value is None:
        return []
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    return [dict(v) for v in value or []]


def stream_from_config(config: SourceConfig) -> SoapVoucherStream:
    """`kind: erp.soap` (see config/sources/erp_soap.yaml)."""
    from archive_hub.settings import Settings
    from archive_hub.sources import refuse_unknown_settings

    conn = config.connection
    refuse_unknown_settings(config, CONNECTION_KEYS)
    for key in ("url", "user", "password", "data_center"):
        if not str(conn.get(key) or ""):
            raise ConfigError(config.id, f"connection.{key}", "is required")
    if not str(conn["url"]).startswith(("http://", "https://")):
        raise ConfigError(config.id, "connection.url", "must be an http(s):// URL of the service endpoint")
    try:
        timeout = float(conn.get("timeout", 30))
    except (TypeError, ValueError):
        raise ConfigError(config.id, "connection.timeout", "must be a number of seconds") from None
    if not timeout > 0:  # also NaN
        raise ConfigError(config.id, "connection.timeout", "must be more than 0 seconds")
    return SoapVoucherStream(
        config.id,
        str(conn["url"]),
        str(conn["user"]),
        str(conn["password"]),
        str(conn["data_center"]),
        Settings.from_env().home / "erp" / config.id / "attachments",
        system=config.system,
        timeout=timeout,
    )
