"""`archive-hub serve`: the archive over HTTP for archivists and auditors, signed in through Keycloak (SSO).

Every request but /healthz carries a Bearer access token, checked by sso/oidc.py; the roles `archivist` and
`auditor` may read. What a user reads is registered under the name the identity provider vouches for, not a
name typed into a form: opening a record is a 查阅, downloading one of its files a 复制 (利用登记, 《会计档案
管理办法》 "查阅、复制、借出 … 应当履行登记手续"), each an event in the hash-chained log with the username,
the token's subject id and the purpose given. A file is served only after its bytes were re-hashed against
the catalog: an archive that hands out altered bytes would launder them, so a changed file is refused (409)
and named. A file is named by its path inside the package, as the catalog lists it; no path from a request
ever reaches the filesystem.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import Event, append
from archive_hub.settings import Settings
from archive_sink.hashing import stream_digests
from sso.oidc import Identity, InvalidToken, IssuerUnreachable, TokenVerifier

READERS = frozenset({"archivist", "auditor"})
MAX_LIMIT = 500
IN_MEMORY = 32 << 20  # files up to this size are sent from memory; larger ones streamed from the open file
CHUNK = 1 << 20
Purpose = Annotated[str | None, Query(max_length=500, description="why (利用登记)")]


class Problem(HTTPException):
    """An error answered as JSON {"detail": ...}; 401s say how to authenticate (RFC 6750)."""


def _identity(request: Request) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "sign in: send an access token from the identity provider as 'Authorization: Bearer …'",
            headers={"WWW-Authenticate": 'Bearer realm="archive-hub"'},
        )
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return verifier.verify(token.strip())
    except InvalidToken as exc:
        raise Problem(
            401,
            f"access token refused: {exc}",
            headers={
                "WWW-Authenticate": f'Bearer realm="archive-hub", error="invalid_token", error_description="{exc}"'
            },
        ) from None
    except IssuerUnreachable as exc:
        raise Problem(503, str(exc)) from None


Caller = Annotated[Identity, Depends(_identity)]


def _reader(who: Caller) -> Identity:
    if not who.has_any(READERS):
        raise Problem(403, f"{who.username} has neither role {' nor '.join(sorted(READERS))}")
    return who


Reader = Annotated[Identity, Depends(_reader)]


def create_app(settings: Settings, verifier: TokenVerifier, catalog: Catalog | None = None) -> FastAPI:
    app = FastAPI(
        title="archive-hub",
        summary="电子会计档案: search, consult (查阅) and download, for users signed in through SSO",
        docs_url="/docs",
        redoc_url=None,
    )
    catalog = catalog or Catalog(settings.catalog_url)
    app.state.verifier = verifier

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/me")
    def me(who: Caller) -> dict[str, Any]:
        return {"username": who.username, "subject": who.subject, "roles": sorted(who.roles)}

    @app.get("/api/records")
    def records(
        who: Reader,
        text: str | None = None,
        code: str | None = None,
        voucher: str | None = None,
        year: int | None = None,
        period: int | None = None,
        category: str | None = None,
        invoice: str | None = None,
        date_from: Annotated[str | None, Query(alias="from")] = None,
        date_to: Annotated[str | None, Query(alias="to")] = None,
        amount_min: Annotated[str | None, Query(alias="min")] = None,
        amount_max: Annotated[str | None, Query(alias="max")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    ) -> list[dict[str, Any]]:
        """Search, as `archive-hub search`; a search is not a consultation and registers nothing."""
        from archive_hub.catalog.search import SearchQuery, hit_summary, search
        from canonical_model.archival_code import CATEGORY_CODES

        query = SearchQuery(
            code,
            voucher,
            year,
            period,
            _amount(amount_min, "min"),
            _amount(amount_max, "max"),
            text,
            limit,
            CATEGORY_CODES.get(category or "", category),
            _date(date_from, "from"),
            _date(date_to, "to"),
            invoice.strip() if invoice else None,
        )
        with catalog.reading() as session:
            rows = search(session, query)
        return [hit_summary(rec) for rec, _pkg in rows]

    @app.get("/api/usage")
    def usage(
        who: Reader,
        code: str | None = None,
        since: Annotated[str | None, Query(description="from this day on, YYYY-MM-DD")] = None,
    ) -> list[dict[str, Any]]:
        """利用登记簿 (as `archive-hub usage --json`): every 查阅, 复制, 借阅 and 归还 with who, why and when."""
        from archive_hub.catalog.usage import usage_entries

        with catalog.reading() as session:
            return usage_entries(session, code, _date(since, "since"))

    @app.get("/api/reports/approvals")
    def approvals_report(who: Reader) -> list[dict[str, Any]]:
        """审批单 ↔ 记账凭证 for the auditor, as `archive-hub oa reconcile --dry-run --json`: read from the
        archive (each voucher re-hashed first), keeping no pair; pairs kept by the DAG are shown as kept."""
        from archive_hub.approvals import load_scopes, reconcile_approvals

        with catalog.reading() as session:
            return [
                reconcile_approvals(session, scope, settings, link=False).as_dict()
                for scope in load_scopes(settings)
            ]

    @app.get("/api/records/{code}")
    def record(code: str, who: Reader, purpose: Purpose = None) -> dict[str, Any]:
        """One record with every version, its files and events: a 查阅, registered."""
        from archive_hub.catalog.history import record_history

        with catalog.reading() as session:
            if record_history(session, code) is None:
                raise Problem(404, f"no record with 档号 {code!r}")
        _register(catalog, "consulted", code, who, purpose, {})
        with catalog.reading() as session:
            history = record_history(session, code)
        assert history is not None
        return history.as_dict()

    @app.get("/api/records/{code}/files/{path:path}")
    def download(
        code: str, path: str, who: Reader, version: int | None = None, purpose: Purpose = None
    ) -> Response:
        """One file of one version (the current one by default), re-hashed before it is sent: a 复制, registered."""
        from archive_hub.catalog.history import record_history

        with catalog.reading() as session:
            history = record_history(session, code)
        if history is None:
            raise Problem(404, f"no record with 档号 {code!r}")
        if history.record.status == "destroyed":
            raise Problem(410, f"{code} was destroyed under a 销毁清册")
        wanted = version or history.record.current_version
        chosen = next((v for v in history.versions if v.package.version == wanted), None)
        if chosen is None:
            raise Problem(404, f"{code} has no version {wanted}")
        row = next((f for f in chosen.files if f.path == path), None)
        if row is None:
            raise Problem(404, f"{code} v{wanted} holds no file {path!r}")
        file = settings.archive_root / chosen.package.path / row.path
        try:
            handle = file.open("rb")
        except OSError:
            raise Problem(409, f"{code} v{wanted}: {path} is missing from the archive; not served") from None
        # Hashed in full before a byte is sent, from the same open file that is then sent (a file renamed or
        # replaced meanwhile does not change what this handle reads); small files are sent from memory.
        data = handle.read(IN_MEMORY + 1)
        digests = stream_digests(itertools.chain([data], iter(lambda: handle.read(CHUNK), b"")))
        if digests != (row.sha256, row.sm3, row.size):
            handle.close()
            raise Problem(409, f"{code} v{wanted}: {path} differs from the catalog (SHA-256/SM3); not served")
        try:
            _register(catalog, "copied", code, who, purpose, {"version": wanted, "file": path, "via": "http"})
        except BaseException:
            handle.close()
            raise
        headers = {
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
            "X-Archive-SHA256": row.sha256,
            "X-Archive-SM3": row.sm3,
            "X-Archive-Code": quote(code),
        }
        media_type = row.media_type or "application/octet-stream"
        if len(data) <= IN_MEMORY:
            handle.close()
            return Response(data, media_type=media_type, headers=headers)
        handle.seek(0)

        def chunks() -> Iterator[bytes]:
            with handle:
                while block := handle.read(CHUNK):
                    yield block

        return StreamingResponse(
            chunks(), media_type=media_type, headers={**headers, "Content-Length": str(row.size)}
        )

    @app.exception_handler(Problem)
    def problem(_request: Request, exc: Problem) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


def _register(
    catalog: Catalog, kind: str, code: str, who: Identity, purpose: str | None, extra: dict[str, Any]
) -> None:
    detail = {
        "by": who.username,
        "sso_subject": who.subject,
        "purpose": (purpose or "").strip() or None,
        **extra,
    }
    with catalog.transaction() as session:
        append(session, [Event(kind, code, detail)])


def _amount(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise Problem(422, f"{name}: {value!r} is not an amount") from None


def _date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Problem(422, f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None
