"""WeCom (企业微信) server API for approvals (审批): token, approval numbers, detail, files, user names.

Contract (https://developer.work.weixin.qq.com/document/path/91982 and neighbours):
- `GET /cgi-bin/gettoken?corpid&corpsecret` → access_token valid `expires_in` seconds (7200);
- `POST /cgi-bin/oa/getapprovalinfo` lists 审批单号 by apply time (≤ 31 days a call, cursor paging);
- `POST /cgi-bin/oa/getapprovaldetail` gives one approval: form (apply_data), trail (sp_record);
- `GET /cgi-bin/media/get` gives a file of the form (发票, 附件) by its file_id;
- `GET /cgi-bin/user/get` gives a member's name (the approval names people by userid only).
Every answer is HTTP 200 with `errcode`: 0 is success; 42001/40014/41001 mean the token is stale (fetched
again once); 45009 (rate limit) and -1 (system busy) are transient; 40001/40013 are configuration errors.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any
from urllib.parse import unquote

import requests

from connectors.errors import ConfigError, SourceError, TransientSourceError
from connectors.http import HttpClient

TOKEN_STALE = {40014, 41001, 42001}
TRANSIENT = {-1, 45009, 45033}
CONFIG = {40001: "connection.secret", 40013: "connection.corp_id", 60020: "connection.base_url"}
MAX_WINDOW = dt.timedelta(days=31)  # getapprovalinfo refuses longer ranges
TOKEN_MARGIN = 300  # seconds: a token this close to its end is renewed before use


class ApprovalNotFound(SourceError):
    """The approval number is unknown to WeCom (deleted, or another corp's)."""


class WeComApi:
    def __init__(
        self,
        source_id: str,
        base_url: str,
        corp_id: str,
        secret: str,
        *,
        http: HttpClient | None = None,
    ) -> None:
        self.source_id = source_id
        self.corp_id = corp_id
        self._secret = secret
        self.http = http or HttpClient(source_id, base_url)
        self._token: str | None = None
        self._token_until = 0.0
        self._names: dict[str, str] = {}

    def __repr__(self) -> str:  # never the secret or the token
        return f"WeComApi({self.source_id}, {self.http.base_url}, corp {self.corp_id})"

    # -- token -------------------------------------------------------------------------------
    def token(self, *, renew: bool = False) -> str:
        if renew or self._token is None or time.monotonic() >= self._token_until:
            answer = self._answer(
                self.http.request(
                    "GET",
                    "/cgi-bin/gettoken",
                    params={"corpid": self.corp_id, "corpsecret": self._secret},
                    check=self._transient,
                ),
                "/cgi-bin/gettoken",
            )
            self._token = str(answer["access_token"])
            lifetime = int(answer.get("expires_in", 7200))
            self._token_until = time.monotonic() + max(lifetime - TOKEN_MARGIN, lifetime / 2)
        return self._token

    def call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> requests.Response:
        """An API call with the current token; a stale token is fetched again once."""
        for renew in (False, True):
            response = self.http.request(
                method,
                path,
                params={**(params or {}), "access_token": self.token(renew=renew)},
                json=json,
                check=self._transient,
            )
            code = _errcode(response)
            if code in TOKEN_STALE and not renew:
                continue
            return response
        raise AssertionError("unreachable")

    # -- approvals ---------------------------------------------------------------------------
    def approval_numbers(
        self, start: dt.datetime, end: dt.datetime, filters: list[dict[str, str]] | None = None
    ) -> list[str]:
        """审批单号 applied for in [start, end] (UTC), in windows of at most 31 days, each paged."""
        out: list[str] = []
        lo = start
        while lo <= end:
            hi = min(end, lo + MAX_WINDOW - dt.timedelta(seconds=1))
            cursor = ""
            while True:
                body = {
                    "starttime": str(_epoch(lo)),
                    "endtime": str(_epoch(hi)),
                    "new_cursor": cursor,
                    "size": 100,
                    "filters": filters or [],
                }
                path = "/cgi-bin/oa/getapprovalinfo"
                answer = self._answer(self.call("POST", path, json=body), path)
                out.extend(str(n) for n in answer.get("sp_no_list") or [])
                cursor = str(answer.get("new_next_cursor") or "")
                if not cursor:
                    break
            lo = hi + dt.timedelta(seconds=1)
        return list(dict.fromkeys(out))

    def approval_detail(self, sp_no: str) -> tuple[dict[str, Any], bytes]:
        """The approval's `info` and the answer's bytes as received (kept in the package)."""
        path = "/cgi-bin/oa/getapprovaldetail"
        response = self.call("POST", path, json={"sp_no": sp_no})
        answer = self._answer(response, f"{path} (审批单号 {sp_no})", not_found=True)
        info = answer.get("info")
        if not isinstance(info, dict) or str(info.get("sp_no")) != sp_no:
            raise SourceError(f"{self.source_id}: {path}: the answer is not approval {sp_no}")
        return info, response.content

    def media(self, media_id: str) -> tuple[bytes, str, str]:
        """A file of the form: (bytes, file name, content type); a short body is refused."""
        path = "/cgi-bin/media/get"
        response = self.call("GET", path, params={"media_id": media_id})
        kind = response.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()
        if kind in ("application/json", "text/plain") and response.content[:1] == b"{":
            self._answer(response, f"{path} (file {media_id[:24]})")  # an error answer, not the file
        length = response.headers.get("Content-Length")
        encoded = (
            response.headers.get("Content-Encoding", "identity") != "identity"
        )  # length of the gzip, not the file
        if length is not None and length.isdigit() and not encoded and int(length) != len(response.content):
            raise SourceError(
                f"{self.source_id}: {path}: file {media_id[:24]} came short: "
                f"{len(response.content)} of {length} bytes"
            )
        return response.content, _filename(response.headers.get("Content-Disposition", "")) or media_id, kind

    def user_name(self, userid: str) -> str:
        """The member's name (姓名); the userid itself when WeCom does not know it (a member who left)."""
        if userid not in self._names:
            path = "/cgi-bin/user/get"
            response = self.call("GET", path, params={"userid": userid})
            code = _errcode(response)
            if code == 60111:  # userid not found
                self._names[userid] = userid
            else:
                self._names[userid] = str(self._answer(response, path).get("name") or userid)
        return self._names[userid]

    # -- answers -----------------------------------------------------------------------------
    def _transient(self, response: requests.Response) -> None:
        code = _errcode(response)
        if code in TRANSIENT:
            raise TransientSourceError(
                f"{self.source_id}: WeCom errcode {code}: {_errmsg(response)}", retry_after=1.0
            )

    def _answer(self, response: requests.Response, where: str, *, not_found: bool = False) -> dict[str, Any]:
        try:
            answer = response.json()
        except ValueError:
            raise SourceError(f"{self.source_id}: {where}: the answer is not JSON") from None
        code = answer.get("errcode", 0) if isinstance(answer, dict) else None
        if code == 0:
            return answer
        message = f"{self.source_id}: {where}: WeCom errcode {code}: {_errmsg(response)}"
        if code in CONFIG:
            raise ConfigError(self.source_id, CONFIG[code], f"WeCom refused it (errcode {code})")
        if not_found and code == 301025:  # WeCom's "get approval param error" for an unknown number
            raise ApprovalNotFound(message)
        raise SourceError(message)


def _errcode(response: requests.Response) -> int | None:
    if not response.headers.get("Content-Type", "").startswith(("application/json", "text/plain")):
        return None
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer.get("errcode") if isinstance(answer, dict) else None


def _errmsg(response: requests.Response) -> str:
    try:
        return " ".join(str(response.json().get("errmsg", "")).split())[:200]
    except ValueError:
        return ""


def _epoch(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _filename(disposition: str) -> str:
    """RFC 6266: filename*=UTF-8''… wins over filename="…"; path parts are dropped."""
    star = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", disposition, re.I)
    if star:
        name = unquote(star.group(2).strip(), encoding=star.group(1) or "utf-8", errors="replace")
    else:
        plain = re.search(r'filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)', disposition, re.I)
        name = (plain.group(1) or plain.group(2) or "").strip() if plain else ""
    return name.replace("\\", "/").rsplit("/", 1)[-1].strip()
