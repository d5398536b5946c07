"""用友 YonBIP (BIP 旗舰版) open API: the self-built app token (selfAppAuth) and the answer envelope.

What the declarative REST source (connectors/erp/rest.py) cannot say in YAML lives here:

- Token: GET `open-auth/selfAppAuth/getAccessToken?appKey=&timestamp=&signature=`, where `timestamp` is
  Unix milliseconds and `signature` = Base64(HmacSHA256(appSecret, "appKey" + appKey + "timestamp" +
  timestamp)) (the parameters sorted by name and joined name+value; URL-encoded on the wire). The answer
  `{"code": "00000", "data": {"access_token", "expire"}}`; every call then carries `?access_token=`.
- Business answers are `{"code": "200", "message", "data"}`; another code is an error. YonBIP does not
  publish one code for an expired token, so an error whose message names the token is taken as one and the
  token is fetched again, once.
- 辅助核算 come as a list per line (`clientauxiliary`: [{"name": 客户, "value": ...}]); `prepare` turns it
  into the name → value object the mapping reads.

`queryVouchers` filters by 会计期间 (periodStart), not by change time, and pages by `pager`; the source
config therefore asks from the period `query_lookback_days` before the cursor (a voucher entered late into
an earlier period: 结转, 计提, 审计调整) and orders the window itself (`ordered: false`); `recordCount` must
not change while it pages. A voucher entered into a period older than that is found by `archive-hub sync
--full`. Attachments
(附件) are not fetched: YonBIP's file service differs per product line; the vouchers are archived with the
attachment count they declare. Field names follow public integrators' snapshots of queryVouchers: check
them against your tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import requests

from archive_hub.settings import redact_text
from connectors.erp.rest import RestVoucherStream, SessionExpired, json_answer
from connectors.errors import ConfigError, SourceError
from connectors.http import HttpClient
from connectors.stream import SourceRecord

TOKEN_PATH = "/open-auth/selfAppAuth/getAccessToken"
TOKEN_OK = "00000"
CALL_OK = "200"


def self_app_signature(app_key: str, timestamp: str, app_secret: str) -> str:
    """Base64(HmacSHA256(appSecret, sorted name+value pairs)): the value before URL encoding."""
    message = f"appKey{app_key}timestamp{timestamp}".encode()
    return base64.b64encode(hmac.new(app_secret.encode(), message, hashlib.sha256).digest()).decode()


class YonbipVendor:
    def __init__(self, source_id: str, auth: dict[str, Any], clock: Callable[[], float] = time.time) -> None:
        for name in ("app_key", "app_secret"):
            if not str(auth.get(name) or ""):
                raise ConfigError(
                    source_id, f"connection.auth.{name}", "is empty (set the environment variable it names)"
                )
        self.source_id = source_id
        self.app_key = str(auth["app_key"])
        self._secret = str(auth["app_secret"])
        self.token_url = str(auth.get("token_url") or "")  # absolute; empty: base_url + TOKEN_PATH
        self.clock = clock
        self.token = ""
        self.logins = 0

    def __repr__(self) -> str:
        return f"YonbipVendor({self.source_id}, appKey {self.app_key})"

    def login(self, http: HttpClient) -> None:
        timestamp = str(int(self.clock() * 1000))
        params = {
            "appKey": self.app_key,
            "timestamp": timestamp,
            "signature": self_app_signature(self.app_key, timestamp, self._secret),
        }
        absolute = bool(self.token_url)
        answer = http.request("GET", self.token_url or TOKEN_PATH, params=params, absolute=absolute)
        body = json_answer(answer, f"{self.source_id}: getAccessToken")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(body, dict) or body.get("code") != TOKEN_OK or not isinstance(data, dict):
            said = redact_text(str(body.get("message") or "")) if isinstance(body, dict) else None
            code = body.get("code") if isinstance(body, dict) else None
            raise ConfigError(
                self.source_id,
                "connection.auth.app_secret",
                f"YonBIP refused the token for appKey {self.app_key} (code {code}: "
                f"{str(said or 'no message')[:160]}); check app_key and app_secret",
            )
        token = data.get("access_token")
        if not token:
            raise SourceError(f"{self.source_id}: getAccessToken: YonBIP answered without an access_token")
        self.token = str(token)
        self.logins += 1

    def auth(self) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {"access_token": self.token}

    def unwrap(self, response: requests.Response, what: str) -> Any:
        if response.status_code == 401:
            raise SessionExpired("HTTP 401")
        body = json_answer(response, f"{self.source_id}: {what}")
        if not isinstance(body, dict):
            raise SourceError(
                f"{self.source_id}: {what}: YonBIP answered {type(body).__name__}, not an object"
            )
        code, message = str(body.get("code")), redact_text(str(body.get("message") or ""))
        if code == CALL_OK:
            return body
        if "token" in message.lower():
            raise SessionExpired(message[:160])
        raise SourceError(f"{self.source_id}: {what}: YonBIP code {code}: {message[:300] or 'no message'}")

    def prepare(self, data: dict[str, Any]) -> dict[str, Any]:
        year, _, month = str((data.get("header") or {}).get("period") or "").partition("-")
        if year.isdigit() and month.isdigit():  # 会计期间 "2025-03": the year and the period apart
            data["fiscal_year"], data["period_no"] = int(year), int(month)
        for line in data.get("lines") or []:
            pairs = line.get("clientauxiliary") or []
            line["auxiliary"] = {
                str(p.get("name")): p.get("value") for p in pairs if isinstance(p, dict) and p.get("name")
            }
        return data

    def attachments(self, stream: RestVoucherStream, records: list[SourceRecord]) -> None:
        """Not fetched (see the module docstring)."""


def vendor(source_id: str, auth: dict[str, Any]) -> YonbipVendor:
    return YonbipVendor(source_id, auth)
