"""The HTTP runtime every API connector shares (after Airbyte CDK's HttpStream): retries and redaction.

A connector says *what* to call; this module decides how often to try. Connection failures, 429 and 5xx
are TransientSourceError and retried with exponential backoff, honouring Retry-After (0 or garbage: no
hint). A connector that carries its own "try again" signal inside a 200 answer (WeCom's errcode 45009,
DingTalk's 90018) raises TransientSourceError from `check` and is retried the same way.

Errors name the source, the method and the path, never the query string: vendor contracts put tokens
and secrets there (WeCom's `?corpsecret=`, `?access_token=`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
    ) -> requests.Response:
        """One call, retried while it fails transiently; `check` may raise TransientSourceError too."""
        where = f"{self.source_id}: {method} {path}"
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._send(method, path, params, json, where)
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
        self, method: str, path: str, params: dict[str, Any] | None, json: Any, where: str
    ) -> requests.Response:
        try:
            response = self.session.request(
                method, self.base_url + path, params=params, json=json, timeout=self.timeout
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
            raise TransientSourceError(f"{where}: cannot connect to {self.base_url} ({reason})") from None
        except (
            requests.RequestException
        ) as exc:  # InvalidSchema, InvalidURL ...: their text quotes the URL too
            raise SourceError(f"{where}: {type(exc).__name__}: {self.base_url} cannot be called") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSourceError(
                f"{where}: HTTP {response.status_code}", retry_after(response.headers.get("Retry-After"))
            )
        if response.status_code >= 400:
            raise SourceError(f"{where}: HTTP {response.status_code}: {_snippet(response)}")
        return response


def _snippet(response: requests.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable body: the status says enough
        return ""
    return " ".join(text.split())[:200]
