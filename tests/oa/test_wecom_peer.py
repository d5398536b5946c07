"""The local WeCom peer as a real process over HTTP: tokens, paging, detail, media, errors, injected faults,
and the callback sender against a receiver that checks signatures like the hub will."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import defusedxml.ElementTree as DefusedET
import pytest
import requests

from connectors.oa.callback_crypto import CallbackCrypt, CallbackError, wecom_envelope_encrypt
from connectors.oa.wecom_peer import content_disposition, send_approval_callback, verify_url
from tests.oa.wecom_server import REPO_ROOT, start_wecom_peer, stop_wecom_peer

CORP_ID = "wwa1b2c3d4e5f60718"
SECRET = "wecom-peer-secret-Zk8qP1vX7mN3"  # a value the tests look for where it must not be
T0 = 1704067200  # 2024-01-01 00:00:00 UTC
DAY = 86400
MEDIA_ID = "MEDIA_INVOICE_1"
MEDIA_NAME = "发票 2024年1月(报销).pdf"
MEDIA_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 40
CALLBACK_TOKEN = "QDG6eK3pTz"
CALLBACK_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"

PeerFactory = Callable[..., tuple[subprocess.Popen[bytes], str]]


def approval_info(
    sp_no: str, apply_time: int, template_id: str, sp_status: int, userid: str, party: str
) -> dict[str, Any]:
    """An `info` object shaped as getapprovaldetail returns it."""
    return {
        "sp_no": sp_no,
        "sp_name": "费用报销" if template_id == "TPL_EXPENSE" else "请假",
        "sp_status": sp_status,
        "template_id": template_id,
        "apply_time": apply_time,
        "applyer": {"userid": userid, "partyid": party},
        "sp_record": [
            {
                "sp_status": sp_status,
                "approverattr": 1,
                "details": [
                    {
                        "approver": {"userid": "LiuZong"},
                        "speech": "同意",
                        "sp_status": sp_status,
                        "sptime": apply_time + 600,
                        "media_id": [],
                    }
                ],
            }
        ],
        "notifyer": [],
        "apply_data": {
            "contents": [
                {
                    "control": "Money",
                    "id": "Money-1",
                    "title": [{"text": "金额", "lang": "zh_CN"}],
                    "value": {"new_money": "1280.50"},
                },
                {
                    "control": "File",
                    "id": "File-1",
                    "title": [{"text": "附件", "lang": "zh_CN"}],
                    "value": {"files": [{"file_id": MEDIA_ID}]},
                },
            ]
        },
        "comments": [],
    }


APPROVALS = [
    approval_info("202401010001", T0 + 100, "TPL_EXPENSE", 2, "ZhangSan", "2"),
    approval_info("202401010003", T0 + 200, "TPL_EXPENSE", 1, "LiSi", "3"),
    approval_info("202401010002", T0 + 200, "TPL_LEAVE", 2, "ZhangSan", "2"),  # same time: sp_no decides
    approval_info("202401020001", T0 + DAY, "TPL_EXPENSE", 3, "WangWu", "3"),
    approval_info("202401030001", T0 + 2 * DAY, "TPL_EXPENSE", 2, "LiSi", "2"),
    approval_info("202311200001", T0 - 40 * DAY, "TPL_EXPENSE", 2, "LiSi", "2"),  # outside the range
]
IN_RANGE = ["202401010001", "202401010002", "202401010003", "202401020001", "202401030001"]


def write_data(folder: Path) -> Path:
    (folder / "approvals").mkdir(parents=True)
    (folder / "media").mkdir()
    for info in APPROVALS:
        (folder / "approvals" / f"{info['sp_no']}.json").write_text(
            json.dumps(info, ensure_ascii=False), "utf-8"
        )
    (folder / "media" / MEDIA_ID).write_bytes(MEDIA_BYTES)
    meta = {"file_name": MEDIA_NAME, "content_type": "application/pdf"}
    (folder / "media" / f"{MEDIA_ID}.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("wecom") / "data")


@pytest.fixture(scope="module")
def peer(data_dir: Path) -> Iterator[str]:
    process, url = start_wecom_peer(data_dir, data_dir.parent / "peer.log", corp_id=CORP_ID, secret=SECRET)
    try:
        yield url
    finally:
        stop_wecom_peer(process)


@pytest.fixture
def peer_factory(tmp_path: Path) -> Iterator[PeerFactory]:
    started: list[subprocess.Popen[bytes]] = []

    def start(data: Path, log: Path, **kwargs: Any) -> tuple[subprocess.Popen[bytes], str]:
        process, url = start_wecom_peer(data, log, corp_id=CORP_ID, secret=SECRET, **kwargs)
        started.append(process)
        return process, url

    try:
        yield start
    finally:
        for process in started:
            stop_wecom_peer(process)


def gettoken(base: str, corpid: str = CORP_ID, secret: str = SECRET) -> dict[str, Any]:
    answer = requests.get(
        f"{base}/cgi-bin/gettoken", params={"corpid": corpid, "corpsecret": secret}, timeout=10
    )
    assert answer.status_code == 200
    return answer.json()


def token_of(base: str) -> str:
    body = gettoken(base)
    assert body["errcode"] == 0, body
    return body["access_token"]


def post(base: str, path: str, token: str | None, body: object) -> requests.Response:
    params = {} if token is None else {"access_token": token}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{base}{path}", params=params, data=data, timeout=10)


def list_page(base: str, token: str, **body: Any) -> dict[str, Any]:
    request = {"starttime": str(T0), "endtime": str(T0 + 3 * DAY), "new_cursor": "", "size": 100, **body}
    answer = post(base, "/cgi-bin/oa/getapprovalinfo", token, request)
    assert answer.status_code == 200
    return answer.json()


def stats(base: str) -> dict[str, Any]:
    return requests.get(f"{base}/_peer/stats", timeout=10).json()


def set_faults(base: str, **faults: Any) -> dict[str, Any]:
    answer = requests.post(f"{base}/_peer/faults", json=faults, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- tokens ------------------------------------------------------------------------------------------


def test_gettoken_and_reuse(peer: str) -> None:
    before = stats(peer)
    first = gettoken(peer)
    assert first["errcode"] == 0 and first["errmsg"] == "ok"
    assert 7000 < first["expires_in"] <= 7200 and len(first["access_token"]) >= 64
    second = gettoken(peer)
    assert second["access_token"] == first["access_token"]  # WeCom repeats a still-valid token
    after = stats(peer)
    assert after["calls"]["gettoken"] - before["calls"].get("gettoken", 0) == 2
    assert after["tokens_issued"] - before["tokens_issued"] <= 1


@pytest.mark.parametrize(
    ("corpid", "secret", "errcode", "errmsg"),
    [
        ("wwSomeoneElse", SECRET, 40013, "invalid corpid"),
        (CORP_ID, SECRET + "x", 40001, "invalid credential"),
        (CORP_ID, "", 41004, "corpsecret missing"),
        ("", SECRET, 41002, "corpid missing"),
    ],
)
def test_gettoken_errors(peer: str, corpid: str, secret: str, errcode: int, errmsg: str) -> None:
    body = gettoken(peer, corpid, secret)
    assert body == {"errcode": errcode, "errmsg": errmsg}


def test_token_expiry(data_dir: Path, tmp_path: Path, peer_factory: PeerFactory) -> None:
    _, base = peer_factory(data_dir, tmp_path / "short.log", token_ttl=1)
    token = token_of(base)
    assert post(base, "/cgi-bin/oa/getapprovaldetail", token, {"sp_no": IN_RANGE[0]}).json()["errcode"] == 0
    time.sleep(1.3)
    expired = post(base, "/cgi-bin/oa/getapprovaldetail", token, {"sp_no": IN_RANGE[0]})
    assert expired.status_code == 200
    assert expired.json() == {"errcode": 42001, "errmsg": "access_token expired"}
    fresh = token_of(base)
    assert fresh != token
    assert post(base, "/cgi-bin/oa/getapprovaldetail", fresh, {"sp_no": IN_RANGE[0]}).json()["errcode"] == 0
    assert stats(base)["tokens_issued"] == 2


def test_unknown_and_missing_token(peer: str) -> None:
    unknown = post(peer, "/cgi-bin/oa/getapprovaldetail", "not-a-token", {"sp_no": IN_RANGE[0]}).json()
    assert unknown == {"errcode": 40014, "errmsg": "invalid access_token"}
    missing = post(peer, "/cgi-bin/oa/getapprovaldetail", None, {"sp_no": IN_RANGE[0]}).json()
    assert missing["errcode"] == 41001
    media = requests.get(f"{peer}/cgi-bin/media/get", params={"media_id": MEDIA_ID}, timeout=10).json()
    assert media["errcode"] == 41001


def test_expire_tokens_fault(data_dir: Path, tmp_path: Path, peer_factory: PeerFactory) -> None:
    _, base = peer_factory(data_dir, tmp_path / "expire.log")
    token = token_of(base)
    set_faults(base, expire_tokens=True)
    assert list_page(base, token)["errcode"] == 42001
    assert token_of(base) != token


# --- listing and detail ------------------------------------------------------------------------------


def test_list_pages_in_order(peer: str) -> None:
    token = token_of(peer)
    first = list_page(peer, token, size=3)
    assert first["errcode"] == 0 and first["errmsg"] == "ok"
    assert first["sp_no_list"] == IN_RANGE[:3]
    assert first["new_next_cursor"]
    second = list_page(peer, token, size=3, new_cursor=first["new_next_cursor"])
    assert second["sp_no_list"] == IN_RANGE[3:]
    assert second["new_next_cursor"] == ""
    assert list_page(peer, token)["sp_no_list"] == IN_RANGE
    exact = list_page(peer, token, size=5)
    assert exact["sp_no_list"] == IN_RANGE and exact["new_next_cursor"] == ""


def test_list_time_range_is_inclusive(peer: str) -> None:
    token = token_of(peer)
    body = list_page(peer, token, starttime=T0 + 200, endtime=str(T0 + DAY))
    assert body["sp_no_list"] == ["202401010002", "202401010003", "202401020001"]
    earlier = list_page(peer, token, starttime=str(T0 - 41 * DAY), endtime=str(T0 - 20 * DAY))
    assert earlier["sp_no_list"] == ["202311200001"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([{"key": "template_id", "value": "TPL_LEAVE"}], ["202401010002"]),
        ([{"key": "sp_status", "value": "2"}], ["202401010001", "202401010002", "202401030001"]),
        ([{"key": "creator", "value": "LiSi"}], ["202401010003", "202401030001"]),
        ([{"key": "department", "value": "3"}], ["202401010003", "202401020001"]),
        (
            [{"key": "template_id", "value": "TPL_EXPENSE"}, {"key": "sp_status", "value": "2"}],
            ["202401010001", "202401030001"],
        ),
        (
            [{"key": "department", "value": "3"}, {"key": "department", "value": "2"}],
            IN_RANGE,
        ),
    ],
    ids=["template", "status", "creator", "department", "and-across-keys", "or-within-key"],
)
def test_list_filters(peer: str, filters: list[dict[str, str]], expected: list[str]) -> None:
    assert list_page(peer, token_of(peer), filters=filters)["sp_no_list"] == expected


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"endtime": str(T0 + 31 * DAY + 1)}, "31 days"),
        ({"endtime": str(T0 - 1)}, "before starttime"),
        ({"starttime": "yesterday"}, "unix seconds"),
        ({"size": 101}, "size"),
        ({"size": 0}, "size"),
        ({"new_cursor": "%%%"}, "new_cursor"),
        ({"filters": [{"key": "record_type", "value": "1"}]}, "filter key"),
    ],
)
def test_list_errors(peer: str, change: dict[str, Any], words: str) -> None:
    body = list_page(peer, token_of(peer), **change)
    assert body["errcode"] == 301025
    assert words in body["errmsg"]


def test_bad_json(peer: str) -> None:
    answer = post(peer, "/cgi-bin/oa/getapprovalinfo", token_of(peer), b"{not json")
    assert answer.status_code == 200 and answer.json()["errcode"] == 47001


def test_range_of_exactly_31_days_is_allowed(peer: str) -> None:
    body = list_page(peer, token_of(peer), endtime=str(T0 + 31 * DAY))
    assert body["errcode"] == 0 and body["sp_no_list"] == IN_RANGE


def test_detail(peer: str) -> None:
    answer = post(peer, "/cgi-bin/oa/getapprovaldetail", token_of(peer), {"sp_no": "202401010002"})
    body = answer.json()
    assert body["errcode"] == 0 and body["errmsg"] == "ok"
    assert body["info"] == APPROVALS[2]


@pytest.mark.parametrize("sp_no", ["209901010001", "../approvals/202401010001", "", 202401010001])
def test_detail_unknown(peer: str, sp_no: object) -> None:
    answer = post(peer, "/cgi-bin/oa/getapprovaldetail", token_of(peer), {"sp_no": sp_no})
    assert answer.status_code == 200
    body = answer.json()
    assert body["errcode"] == 301025 and "info" not in body


# --- media ---------------------------------------------------------------------------------------------


def test_media_download_with_chinese_name(peer: str) -> None:
    answer = requests.get(
        f"{peer}/cgi-bin/media/get", params={"access_token": token_of(peer), "media_id": MEDIA_ID}, timeout=10
    )
    assert answer.status_code == 200
    assert answer.content == MEDIA_BYTES
    assert answer.headers["Content-Type"] == "application/pdf"
    assert answer.headers["Content-Length"] == str(len(MEDIA_BYTES))
    disposition = answer.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded, encoding="utf-8") == MEDIA_NAME


def test_content_disposition_fallback_is_ascii() -> None:
    value = content_disposition('报"告\\.pdf')
    value.encode("latin-1")
    assert value.startswith("attachment; filename=\"____.pdf\"; filename*=UTF-8''")
    assert unquote(value.split("''", 1)[1]) == '报"告\\.pdf'


@pytest.mark.parametrize("media_id", ["NO_SUCH_MEDIA", f"{MEDIA_ID}.json", "../media/MEDIA_INVOICE_1", ""])
def test_media_unknown(peer: str, media_id: str) -> None:
    answer = requests.get(
        f"{peer}/cgi-bin/media/get", params={"access_token": token_of(peer), "media_id": media_id}, timeout=10
    )
    assert answer.status_code == 200
    assert answer.json() == {"errcode": 40007, "errmsg": "invalid media_id"}


# --- faults --------------------------------------------------------------------------------------------


def test_rate_limit_and_server_error(peer: str) -> None:
    token = token_of(peer)
    set_faults(peer, rate_limit_next=2)
    for _ in range(2):
        body = list_page(peer, token)
        assert body == {"errcode": 45009, "errmsg": "api freq out of limit"}
    assert list_page(peer, token)["errcode"] == 0

    set_faults(peer, server_error_next=1)
    failed = post(peer, "/cgi-bin/oa/getapprovaldetail", token, {"sp_no": IN_RANGE[0]})
    assert failed.status_code == 503
    assert post(peer, "/cgi-bin/oa/getapprovaldetail", token, {"sp_no": IN_RANGE[0]}).json()["errcode"] == 0

    set_faults(peer, rate_limit_next=1)
    assert gettoken(peer)["errcode"] == 45009  # gettoken is an API call too
    assert set_faults(peer) == {"rate_limit_next": 0, "server_error_next": 0, "truncate_media": {}}


def test_bad_fault_requests(peer: str) -> None:
    assert requests.post(f"{peer}/_peer/faults", json={"rate_limit_next": -1}, timeout=10).status_code == 400
    assert requests.post(f"{peer}/_peer/faults", data=b"[]", timeout=10).status_code == 400


def download_raw(base: str, token: str) -> tuple[int, int, bytes]:
    """(declared Content-Length, bytes received, body) read with http.client, which reports a short body."""
    split = urlsplit(base)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        connection.request("GET", f"/cgi-bin/media/get?access_token={token}&media_id={MEDIA_ID}")
        response = connection.getresponse()
        declared = int(response.getheader("Content-Length"))
        try:
            body = response.read()
        except http.client.IncompleteRead as short:
            body = short.partial
        return declared, len(body), body
    finally:
        connection.close()


def test_truncated_media(peer: str) -> None:
    token = token_of(peer)
    assert set_faults(peer, truncate_media=MEDIA_ID)["truncate_media"] == {MEDIA_ID: 1}
    declared, received, body = download_raw(peer, token)
    assert declared == len(MEDIA_BYTES)
    assert 0 < received < declared and MEDIA_BYTES.startswith(body)
    assert download_raw(peer, token) == (len(MEDIA_BYTES), len(MEDIA_BYTES), MEDIA_BYTES)  # one-shot

    set_faults(peer, truncate_media=MEDIA_ID)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(
            f"{peer}/cgi-bin/media/get", params={"access_token": token, "media_id": MEDIA_ID}, timeout=10
        )


# --- the process and its log ---------------------------------------------------------------------------


def test_secret_and_tokens_never_reach_the_log(
    data_dir: Path, tmp_path: Path, peer_factory: PeerFactory
) -> None:
    log = tmp_path / "peer.log"
    process, base = peer_factory(data_dir, log)
    gettoken(base, secret="wrong-" + SECRET)
    token = token_of(base)
    list_page(base, token)
    list_page(base, token, endtime=str(T0 + 90 * DAY))
    set_faults(base, server_error_next=1, truncate_media=MEDIA_ID)
    post(base, "/cgi-bin/oa/getapprovaldetail", token, {"sp_no": IN_RANGE[0]})
    download_raw(base, token)
    post(base, "/cgi-bin/oa/getapprovaldetail", token, b"\xff\xfe")
    stop_wecom_peer(process)
    text = log.read_text(errors="replace")
    assert text.startswith(f"wecom peer listening on {base}\n")
    assert SECRET not in text and token not in text and "corpsecret" not in text
    assert "access_token=" not in text


def test_missing_secret_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "connectors.oa.wecom_peer", "--data", ".", "--port", "0", "--corp-id", CORP_ID]
        + ["--secret-env", "ARCHIVE_HUB_TEST_UNSET_VARIABLE"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 2
    assert "ARCHIVE_HUB_TEST_UNSET_VARIABLE" in done.stderr


# --- callbacks -----------------------------------------------------------------------------------------


class Receiver:
    """A callback URL that checks signatures the way the hub must, on a thread of this test process."""

    def __init__(self, crypt: CallbackCrypt, *, echo_raw: bool = False) -> None:
        self.received: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                if echo_raw:
                    self._answer(200, query["echostr"].encode())
                    return
                try:
                    plain = crypt.verify_and_decrypt(
                        query["msg_signature"], query["timestamp"], query["nonce"], query["echostr"]
                    )
                except CallbackError:
                    self._answer(403, b"")
                    return
                self._answer(200, plain.encode())

            def do_POST(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    encrypt = wecom_envelope_encrypt(body)
                    message = crypt.verify_and_decrypt(
                        query["msg_signature"], query["timestamp"], query["nonce"], encrypt
                    )
                except CallbackError:
                    self._answer(403, b"")
                    return
                receiver.received.append(message)
                self._answer(200, b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/wecom/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def callback_crypt(token: str = CALLBACK_TOKEN) -> CallbackCrypt:
    return CallbackCrypt(token, CALLBACK_AES_KEY, CORP_ID)


def send(url: str, crypt: CallbackCrypt, **overrides: Any) -> requests.Response:
    fields: dict[str, Any] = {
        "corp_id": CORP_ID,
        "agent_id": "3010040",
        "sp_no": "202401010001",
        "sp_status": 2,
        "sp_name": "费用报销",
        "template_id": "TPL_EXPENSE",
        "apply_time": T0 + 100,
        "applyer_userid": "ZhangSan",
        **overrides,
    }
    return send_approval_callback(url, crypt, **fields)


def test_verify_url() -> None:
    with Receiver(callback_crypt()) as receiver:
        assert verify_url(receiver.url, callback_crypt()).status_code == 200
        with pytest.raises(CallbackError, match="url verification failed"):
            verify_url(receiver.url, callback_crypt("another-token"))  # receiver answers 403
    with (
        Receiver(callback_crypt(), echo_raw=True) as lazy,
        pytest.raises(CallbackError, match="did not echo"),
    ):
        verify_url(lazy.url, callback_crypt())


def test_send_approval_callback() -> None:
    with Receiver(callback_crypt()) as receiver:
        answer = send(receiver.url, callback_crypt(), applyer_party="2")
        assert answer.status_code == 200
        assert len(receiver.received) == 1
        root = DefusedET.fromstring(receiver.received[0])
        assert root.tag == "xml"
        assert root.findtext("ToUserName") == CORP_ID
        assert root.findtext("FromUserName") == "sys"
        assert root.findtext("MsgType") == "event"
        assert root.findtext("Event") == "sys_approval_change"
        assert root.findtext("AgentID") == "3010040"
        assert abs(int(root.findtext("CreateTime") or 0) - time.time()) < 60
        info = root.find("ApprovalInfo")
        assert info is not None
        assert info.findtext("SpNo") == "202401010001"
        assert info.findtext("SpName") == "费用报销"
        assert info.findtext("SpStatus") == "2"
        assert info.findtext("TemplateId") == "TPL_EXPENSE"
        assert info.findtext("ApplyTime") == str(T0 + 100)
        assert info.findtext("Applyer/UserId") == "ZhangSan"
        assert info.findtext("Applyer/Party") == "2"
        assert info.findtext("StatuChangeEvent") == "2"

        rejected = send(receiver.url, callback_crypt("another-token"))
        assert rejected.status_code == 403 and len(receiver.received) == 1

        send(receiver.url, callback_crypt(), sp_status=4)
        revoked = DefusedET.fromstring(receiver.received[-1])
        assert revoked.findtext("ApprovalInfo/StatuChangeEvent") == "6"


def test_status_without_a_single_event_needs_one() -> None:
    with pytest.raises(ValueError, match="statu_change_event"):
        send("http://127.0.0.1:9/never", callback_crypt(), sp_status=7)


def test_make_app_in_process_with_a_fake_clock(data_dir: Path) -> None:
    """make_app's kwargs: an injected clock expires tokens without sleeping; faults apply from the start."""
    import asyncio

    import httpx

    from connectors.oa.wecom_peer import make_app

    now = [1000.0]
    app = make_app(
        data_dir,
        corp_id=CORP_ID,
        corp_secret=SECRET,
        token_ttl=60,
        faults={"rate_limit_next": 1},
        clock=lambda: now[0],
    )
    params = {"corpid": CORP_ID, "corpsecret": SECRET}

    async def scenario() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://peer"
        ) as client:
            assert (await client.get("/cgi-bin/gettoken", params=params)).json()["errcode"] == 45009
            issued = (await client.get("/cgi-bin/gettoken", params=params)).json()
            assert issued["expires_in"] == 60
            now[0] += 45
            again = (await client.get("/cgi-bin/gettoken", params=params)).json()
            assert again["access_token"] == issued["access_token"] and again["expires_in"] == 15
            now[0] += 15
            detail = await client.post(
                "/cgi-bin/oa/getapprovaldetail",
                params={"access_token": issued["access_token"]},
                json={"sp_no": "x"},
            )
            assert detail.json()["errcode"] == 42001
            renewed = (await client.get("/cgi-bin/gettoken", params=params)).json()
            assert renewed["access_token"] != issued["access_token"]

    asyncio.run(scenario())
