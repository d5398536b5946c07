"""The HTTP runtime every API connector shares (after Airbyte CDK's HttpStream): retries and redaction.

A connector says *what* to call; this module decides how often to try. Connection failures, 429 and 5xx
are TransientSourceError and retried with exponential backoff, honouring Retry-After (0 or garbage: no
hint). A connector that carries its own "try again" signal inside a 200 answer (WeCom's errcode 45009,
DingTalk's 90018) raises TransientSourceError from `check` and is retried the same way. A vendor that
answers errors with a 4xx status and a JSON code (DingTalk's v1.0 API: 400/401/403 with "code") names
those statuses in `accept_status`, so its `check` and its caller read the code instead of a bare
SourceError; every other 4xx stays a SourceError.

Errors name the source, the method and the path, never the query string: vendor contracts put tokens
and secrets there (WeCom's `?corpsecret=`, `?access_token=`, the signature of a pre-signed download link).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from connectors.errors import SourceError, TransientSourceError

MAX_RETRY_AFTER = 60.0  # a peer asking for longer is asked again after a minute


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; 0, a date or garbage mean no usable hint."""
    try:
        seconds = float(value) if value is not None else 0.0
    except ValueError:
        return None
    return min(seconds, MAX_RETRY_AFTER) if seconds > 0 else None


class TooLarge(Exception):
    """A body past the bytes its reader allows (`size`: its declared length, or what arrived before the cut)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes or more, more than {limit} allowed")
        self.size, self.limit = size, limit


def read_at_most(response: requests.Response, limit: int, chunk: int = 1 << 20) -> bytes:
    """The body of a `stream=True` response, refused (TooLarge, connection closed) once it declares or sends
    more than `limit` bytes: a peer cannot make the hub buffer what it does not allow. A body cut off
    mid-way raises requests' own errors, as an unstreamed read would."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        response.close()
        raise TooLarge(int(length), limit)
    body, size = [], 0
    for piece in response.iter_content(chunk):
        size += len(piece)
        if size > limit:
            response.close()
            raise TooLarge(size, limit)
        body.append(piece)
    return b"".join(body)


class HttpClient:
    def __init__(
        self,
        source_id: str,
        base_url: str,
        *,
        timeout: float = 20.0,
        attempts: int = 4,
        backoff: float = 0.5,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source_id = source_id
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.session = session or requests.Session()
        self.sleep = sleep
        self.retries = 0  # how many tries were repeated, for run summaries and tests

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        check: Callable[[requests.Response], None] | None = None,
        headers: Mapping[str, str] | None = None,
        accept_status: Collection[int] = (),
        absolute: bool = False,
    ) -> requests.Response:
        """One call, retried while it fails transiently; `check` may raise TransientSourceError too.

        `headers`: sent as given (a token header is never part of an error). `accept_status`: 4xx statuses
        returned to `check` and the caller rather than raised. `absolute`: `path` is a whole URL (a
        pre-signed link on another host), named in errors without its query string."""
        url = path if absolute else self.base_url + path
        shown = _without_query(path) if absolute else path
        origin = _origin(url) if absolute else self.base_url
        where = f"{self.source_id}: {method} {shown}"
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._send(method, url, params, json, headers, where, origin, accept_status)
                if check is not None:
                    check(response)
                return response
            except TransientSourceError as exc:
                if attempt == self.attempts:
                    raise TransientSourceError(f"{exc} (gave up after {attempt} tries)") from None
                self.retries += 1
                self.sleep(exc.retry_after or self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _send(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        where: str,
        origin: str,
        accept_status: Collection[int],
    ) -> requests.Response:
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json,
                headers=dict(headers) if headers else None,
                timeout=self.timeout,
            )
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            raise TransientSourceError(
                f"{where}: the answer came short (connection dropped mid-body)"
            ) from None
        except requests.Timeout:
            raise TransientSourceError(f"{where}: no answer within {self.timeout:g} s") from None
        except requests.ConnectionError as exc:
            # The exception text quotes the URL with its query: name the kind of failure only.
            reason = type(exc.__cause__ or exc).__name__
            raise TransientSourceError(f"{where}: cannot connect to {origin} ({reason})") from None
        except (
            requests.RequestException
        ) as exc:  # InvalidSchema, InvalidURL ...: their text quotes the URL too
            raise SourceError(f"{where}: {type(exc).__name__}: {origin} cannot be called") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSourceError(
                f"{where}: HTTP {response.status_code}", retry_after(response.headers.get("Retry-After"))
            )
        if response.status_code >= 400 and response.status_code not in accept_status:
            # A file host's error page may repeat a signed link: for those, the status alone.
            said = "" if origin != self.base_url else f": {_snippet(response)}"
            raise SourceError(f"{where}: HTTP {response.status_code}{said}")
        return response


def _without_query(url: str) -> str:
    """Scheme, host and path: no user-info, query or fragment (where links carry their credentials)."""
    return _origin(url) + urlsplit(url).path


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _snippet(response: requests.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable body: the status says enough
        return ""
    from archive_hub.settings import redact_text  # a vendor may echo a token or secret back in its error

    return redact_text(" ".join(text.split())[:200])
