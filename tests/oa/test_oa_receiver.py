"""The OA callback receiver (`archive-hub oa serve`, archive_hub/oa_callbacks.py) as a real process.

Why: the receiver faces the internet. It must keep a genuine WeCom callback byte for byte (the inbox is
the evidence the archive run reads), refuse forged, hostile or garbled requests at the door while keeping
what was sent and why, and never let the Token, the EncodingAESKey or the corp secret reach an answer or
its log.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from archive_hub.oa_callbacks import MAX_BODY
from archive_hub.sources import build_stream, find_source
from connectors.oa.approval_inbox import ApprovalInbox
from connectors.oa.callback_crypto import CallbackCrypt, wecom_envelope
from connectors.oa.wecom import WeComApprovalStream
from connectors.oa.wecom_peer import approval_change_xml, send_approval_callback, verify_url
from connectors.stream import Cursor
from connectors.testing import read_all
from tests.oa.test_wecom_stream import GOOD, write_wecom_data
from tests.oa.wecom_server import REPO_ROOT, start_wecom_peer, stop_wecom_peer
from tests.s3_server import free_port

SOURCE_ID = "wecom_approvals"
CORP_ID = "ww7c2e9b4a1f3d5086"  # fictitious
AGENT_ID = "3010040"
TOKEN = "rcvTok" + secrets.token_urlsafe(12)  # values the tests look for where they must not be
AES_KEY = base64.b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
SECRET = "rcv-secret-" + secrets.token_urlsafe(16)
SECRETS = (TOKEN, AES_KEY, SECRET)
CRYPT = CallbackCrypt(TOKEN, AES_KEY, CORP_ID)

Params = dict[str, str]


@dataclass
class Receiver:
    base_url: str
    home: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"{self.base_url}/callbacks/{SOURCE_ID}"

    @property
    def inbox(self) -> Path:
        return self.home / "oa_inbox" / SOURCE_ID

    @property
    def refused(self) -> Path:
        return self.home / "quarantine" / SOURCE_ID / "callbacks"


def receiver_env(home: Path, *, without: tuple[str, ...] = ()) -> dict[str, str]:
    """The process environment: this test's hub home and WeCom settings only, none of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_HUB_", "WECOM_"))}
    env |= {
        "ARCHIVE_HUB_HOME": str(home),
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_CALLBACK_TOKEN": TOKEN,
        "WECOM_CALLBACK_AES_KEY": AES_KEY,
        "WECOM_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    return {k: v for k, v in env.items() if k not in without}


def start_receiver(home: Path, *, without: tuple[str, ...] = ()) -> Receiver:
    """`archive-hub oa serve` on a free port, returned once it answers HTTP."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "receiver.log"
    command = [sys.executable, "-m", "archive_hub.cli", "oa", "serve", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=receiver_env(home, without=without),
        )
    receiver = Receiver(f"http://127.0.0.1:{port}", home, log, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{receiver.base_url}/callbacks/nosuch", timeout=2)
            return receiver
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_receiver(receiver)
            raise RuntimeError(f"the receiver did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)


def stop_receiver(receiver: Receiver) -> None:
    if receiver.process.poll() is None:
        receiver.process.terminate()
        try:
            receiver.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            receiver.process.kill()
            receiver.process.wait(timeout=10)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    started = start_receiver(tmp_path_factory.mktemp("receiver") / "hub")
    try:
        yield started
    finally:
        stop_receiver(started)


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def event(sp_no: str, status: int = 2) -> str:
    return approval_change_xml(
        corp_id=CORP_ID,
        agent_id=AGENT_ID,
        sp_no=sp_no,
        sp_status=status,
        sp_name="报销",
        template_id="3WLJF6naF9Ws5hCLcHLuK6dVmhD3eeqS8ZsZfyqB",
        apply_time=1741570200,
        applyer_userid="LiNa",
    )


def fresh() -> tuple[str, str]:
    return str(int(time.time())), str(secrets.randbelow(10**10))


def sealed(crypt: CallbackCrypt, message: str) -> tuple[Params, bytes]:
    """(query parameters, body) of a callback sealed with `crypt`, as WeCom sends one."""
    timestamp, nonce = fresh()
    encrypt, signature = crypt.seal(message, timestamp=timestamp, nonce=nonce)
    params = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
    return params, wecom_envelope(encrypt, to_user=CORP_ID, agent_id=AGENT_ID)


def signed_envelope(encrypt: str) -> tuple[Params, bytes]:
    """An envelope around `encrypt`, signed with the right Token: only decryption can refuse it."""
    timestamp, nonce = fresh()
    params = {
        "msg_signature": CRYPT.signature(timestamp, nonce, encrypt),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    return params, wecom_envelope(encrypt, to_user=CORP_ID, agent_id=AGENT_ID)


def post(url: str, params: Params, body: bytes) -> requests.Response:
    return requests.post(
        url, params=params, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30
    )


# -- what a hostile or broken sender might POST ------------------------------------------------------------
def forged() -> tuple[Params, bytes]:
    """Sealed with the right AES key and corp id, but signed with another Token."""
    return sealed(CallbackCrypt("another-token-1234", AES_KEY, CORP_ID), event(GOOD[0]))


def doctype() -> tuple[Params, bytes]:
    params, _ = sealed(CRYPT, event(GOOD[0]))
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>\n'
        b"<xml><ToUserName><![CDATA[x]]></ToUserName><Encrypt>&b;</Encrypt></xml>"
    )
    return params, body


def oversized() -> tuple[Params, bytes]:
    params, body = sealed(CRYPT, event(GOOD[0]))
    return params, body.replace(b"<Encrypt>", b"<Encrypt>" + b" " * MAX_BODY)


def not_base64() -> tuple[Params, bytes]:
    return signed_envelope("!!garbled, not base64!!")


def bit_flipped() -> tuple[Params, bytes]:
    """A genuine ciphertext with its first bit flipped (signed after the flip): in CBC that flips the top
    bit of the plaintext's length field, so decryption must refuse it."""
    raw = bytearray(base64.b64decode(CRYPT.encrypt(event(GOOD[0]))))
    raw[0] ^= 0x80
    return signed_envelope(base64.b64encode(bytes(raw)).decode("ascii"))


def other_corp() -> tuple[Params, bytes]:
    """Signed with the right Token, but sealed for another corp id."""
    return sealed(CallbackCrypt(TOKEN, AES_KEY, "wwanothercorp0000001"), event(GOOD[0]))


REFUSALS: dict[str, tuple[Callable[[], tuple[Params, bytes]], str]] = {
    "forged": (forged, "signature mismatch"),
    "doctype": (doctype, "not an XML envelope"),
    "oversized": (oversized, f"body larger than {MAX_BODY} bytes"),
    "not_base64": (not_base64, "not base64"),
    "bit_flipped": (bit_flipped, "length field out of range"),
    "other_corp": (other_corp, "receive id mismatch"),
}


# -- tests ------------------------------------------------------------------------------------------------
def test_url_verification(receiver: Receiver) -> None:
    assert verify_url(receiver.url, CRYPT).status_code == 200
    timestamp, nonce = fresh()
    echostr, signature = CRYPT.seal("8301927364502918374", timestamp=timestamp, nonce=nonce)
    before = files(receiver.refused)
    wrong = requests.get(
        receiver.url,
        params={"msg_signature": "0" * 40, "timestamp": timestamp, "nonce": nonce, "echostr": echostr},
        timeout=10,
    )
    assert wrong.status_code == 403 and "signature mismatch" in wrong.text
    assert "8301927364502918374" not in wrong.text
    (new,) = files(receiver.refused) - before
    kept = json.loads((receiver.refused / new).read_bytes())
    assert kept["reason"] == "URL verification: signature mismatch" and kept["params"]["echostr"] == echostr


def test_good_callback_is_kept_as_received(receiver: Receiver) -> None:
    before = files(receiver.inbox)
    answer = send_approval_callback(
        receiver.url,
        CRYPT,
        corp_id=CORP_ID,
        agent_id=AGENT_ID,
        sp_no=GOOD[0],
        sp_status=2,
        sp_name="报销",
        template_id="3WLJF6naF9Ws5hCLcHLuK6dVmhD3eeqS8ZsZfyqB",
        apply_time=1741570200,
        applyer_userid="LiNa",
    )
    assert (answer.status_code, answer.text) == (200, "success")
    assert len(files(receiver.inbox) - before) == 1

    before = files(receiver.inbox)
    refused_before = files(receiver.refused)
    params, body = sealed(CRYPT, event(GOOD[1]))
    answer = post(receiver.url, params, body)
    assert (answer.status_code, answer.text) == (200, "success")
    (new,) = files(receiver.inbox) - before
    kept = json.loads((receiver.inbox / new).read_bytes())
    assert kept["kind"] == "callback"
    assert base64.b64decode(kept["body_b64"]) == body
    assert {k: kept[k] for k in params} == params
    assert files(receiver.refused) == refused_before
    (entry,) = [e for e in ApprovalInbox(receiver.inbox).entries() if e.path.name == new]
    assert entry.body == body


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_callback_is_refused_and_kept(receiver: Receiver, case: str) -> None:
    make, reason = REFUSALS[case]
    params, body = make()
    inbox_before, refused_before = files(receiver.inbox), files(receiver.refused)
    answer = post(receiver.url, params, body)
    assert answer.status_code == 403
    assert reason in answer.text
    assert files(receiver.inbox) == inbox_before
    (new,) = files(receiver.refused) - refused_before
    kept = json.loads((receiver.refused / new).read_bytes())
    assert kept["kind"] == "refused" and kept["reason"] == reason
    assert base64.b64decode(kept["body_b64"]) == body[:MAX_BODY]  # what came, up to the limit
    assert kept["params"] == params


@pytest.mark.parametrize("source", ["nosuch", "erp_sample"])
def test_unknown_or_non_oa_source_is_404(receiver: Receiver, source: str) -> None:
    inbox_before, refused_before = files(receiver.inbox), files(receiver.refused)
    params, body = sealed(CRYPT, event(GOOD[0]))
    url = f"{receiver.base_url}/callbacks/{source}"
    assert post(url, params, body).status_code == 404
    assert requests.get(url, params=params, timeout=10).status_code == 404
    assert (files(receiver.inbox), files(receiver.refused)) == (inbox_before, refused_before)
    assert not (receiver.home / "oa_inbox" / source).exists()


def test_missing_callback_token_answers_503(tmp_path: Path) -> None:
    lacking = start_receiver(tmp_path / "hub", without=("WECOM_CALLBACK_TOKEN",))
    try:
        answer = post(lacking.url, *sealed(CRYPT, event(GOOD[0])))
        verification = requests.get(lacking.url, params={"echostr": "x"}, timeout=10)
    finally:
        stop_receiver(lacking)
    for response in (answer, verification):
        assert response.status_code == 503
        assert "connection.callback.token" in response.text
        assert not any(s in response.text for s in SECRETS)
    assert files(lacking.inbox) == set() and files(lacking.refused) == set()
    log = lacking.log.read_text(errors="replace")
    assert not any(s in log for s in SECRETS)


def test_redelivered_callback_is_kept_twice_and_archived_once(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params, body = sealed(CRYPT, event(GOOD[2]))
    before = files(receiver.inbox)
    for _ in range(2):  # WeCom sends again when it did not get "success" in time
        assert post(receiver.url, params, body).text == "success"
    new = files(receiver.inbox) - before
    assert len(new) == 2
    entries = [e for e in ApprovalInbox(receiver.inbox).entries() if e.path.name in new]
    assert [e.body for e in entries] == [body, body]

    data = write_wecom_data(tmp_path / "wecom")
    process, peer_url = start_wecom_peer(data, tmp_path / "peer.log", corp_id=CORP_ID, secret=SECRET)
    try:
        for name, value in receiver_env(receiver.home).items():
            if name.startswith(("ARCHIVE_HUB_", "WECOM_")):
                monkeypatch.setenv(name, value)
        monkeypatch.delenv("ARCHIVE_HUB_SOURCES_DIR", raising=False)
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        stream = build_stream(find_source(SOURCE_ID))  # the repo's config/sources/wecom_approvals.yaml
        assert isinstance(stream, WeComApprovalStream) and stream.inbox.folder == receiver.inbox
        records = read_all(stream, Cursor(entries[0].received_at))  # from the first delivery on
    finally:
        stop_wecom_peer(process)
    assert [r.key for r in records] == [GOOD[2]]
    assert "_refused" not in records[0].data
    assert records[0].changed_at == entries[1].received_at  # the latest delivery


def test_receiver_log_keeps_no_secrets(receiver: Receiver) -> None:
    """Runs last in this module: the log then holds everything the tests above made the receiver do."""
    assert verify_url(receiver.url, CRYPT).status_code == 200
    assert post(receiver.url, *forged()).status_code == 403
    assert post(receiver.url, *sealed(CRYPT, event(GOOD[3]))).text == "success"
    time.sleep(0.2)
    log = receiver.log.read_text(errors="replace")
    assert "bytes: signature mismatch" in log  # the log is really this receiver's
    leaked = [name for name, s in zip(("token", "AES key", "secret"), SECRETS, strict=True) if s in log]
    assert leaked == []
