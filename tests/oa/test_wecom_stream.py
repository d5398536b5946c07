"""The WeCom approval stream (connectors/oa/wecom.py) over real HTTP against the WeCom peer process.

Why: the stream turns callbacks kept in the approval inbox into 原始凭证 packages; what it archives must be
exactly what WeCom answered (detail bytes, files), what it refuses must be kept with a reason, and a
transient failure must fail the run (the cursor stays) instead of quarantining good approvals.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from canonical_model.record import AccountingForm
from canonical_model.retention import RetentionPeriod
from connectors.errors import ConfigError, TransientSourceError
from connectors.http import HttpClient
from connectors.oa.approval_inbox import ApprovalInbox
from connectors.oa.callback_crypto import CallbackCrypt, wecom_envelope
from connectors.oa.wecom import WeComApprovalStream
from connectors.oa.wecom_api import WeComApi
from connectors.oa.wecom_peer import approval_change_xml
from connectors.stream import SourceRecord
from connectors.testing import read_all, stream_test_class
from mappings.engine import load_mapping
from tests.oa.wecom_server import REPO_ROOT, start_wecom_peer, stop_wecom_peer

SOURCE_ID = "wecom_approvals"
CORP_ID = "ww3f5e8a1c7b9d2046"  # the shape of a WeCom corp id; fictitious
AGENT_ID = "3010040"
SECRET = "stream-test-secret-Qm4vT8zL2pW6"  # a value the tests look for where it must not be
CALLBACK_TOKEN = "cbTok9Xr2LqW"
CALLBACK_AES_KEY = base64.b64encode(os.urandom(32)).decode("ascii").rstrip("=")
TEMPLATE_ID = "3WLJF6naF9Ws5hCLcHLuK6dVmhD3eeqS8ZsZfyqB"
TZ = ZoneInfo("Asia/Shanghai")
CONTEXT = {
    "source_id": SOURCE_ID,
    "system": "wecom",
    "fonds_no": "J001",
    "fonds_name": "华东精密制造有限公司",
}
USERS = {"ZhangWei": "张伟", "LiNa": "李娜", "WangFang": "王芳", "ZhouJie": "周杰", "SunLiHua": "孙丽华"}
APPLICANTS = ["ZhangWei", "LiNa", "WangFang"]
HEAD, FINANCE = "ZhouJie", "SunLiHua"

GOOD = [f"2025031000{n:02d}" for n in range(1, 7)]  # finished (已通过), 1 or 2 files each
REJECTED = "202503110001"  # 驳回
REVOKED = "202503110002"  # 通过后撤销: the callback said 已通过, WeCom now says 6
NO_MEDIA = "202503110003"  # 已通过, but WeCom no longer has its 发票 file
UNKNOWN = "202503119999"  # WeCom has no such approval

PeerStarter = Callable[..., str]


# -- the WeCom data the peer serves (the shapes of connectors/oa/sample_wecom.py) -------------------------
def _stamp(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _control(kind: str, title: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "control": kind,
        "id": f"{kind}-{int(hashlib.sha256(title.encode()).hexdigest(), 16) % 10**13:013d}",
        "title": [{"text": title, "lang": "zh_CN"}],
        "value": value,
    }


def _file_bytes(file_id: str, size: int) -> bytes:
    """Distinct binary content (every byte value occurs), so a changed or cut byte shows."""
    seed = hashlib.sha256(file_id.encode()).digest()
    return (seed + bytes(range(256))) * (size // 288 + 1)


def approval(n: int, sp_no: str, *, status: int = 2, with_receipt: bool = True) -> dict[str, Any]:
    """getapprovaldetail's `info` for a 报销 approval: applicant, head and finance, one 发票 (+ one 附件)."""
    applied = dt.datetime(2025, 3, 10, 9, 30, tzinfo=TZ) + dt.timedelta(hours=n)
    applicant = APPLICANTS[n % len(APPLICANTS)]
    trail = []
    for step, approver in enumerate((HEAD, FINANCE), 1):
        decided = 3 if status == 3 and step == 2 else 2
        trail.append(
            {
                "sp_status": decided,
                "approverattr": 1,
                "details": [
                    {
                        "approver": {"userid": approver},
                        "speech": "同意" if decided == 2 else "发票抬头不符",
                        "sp_status": decided,
                        "sptime": _stamp(applied + dt.timedelta(hours=3 * step)),
                        "media_id": [],
                    }
                ],
            }
        )
    files = [_control("File", "发票", {"files": [{"file_id": f"WWCISP_{sp_no}_invoice"}]})]
    if with_receipt:
        files.append(_control("File", "附件", {"files": [{"file_id": f"WWCISP_{sp_no}_receipt"}]}))
    occurred = dt.datetime.combine(applied.date() - dt.timedelta(days=2), dt.time(0), TZ)
    return {
        "sp_no": sp_no,
        "sp_name": "报销",
        "sp_status": status,
        "template_id": TEMPLATE_ID,
        "apply_time": _stamp(applied),
        "applyer": {"userid": applicant, "partyid": "3"},
        "sp_record": trail,
        "notifyer": [],
        "apply_data": {
            "contents": [
                _control(
                    "Selector",
                    "费用类型",
                    {
                        "selector": {
                            "type": "single",
                            "options": [{"key": "option-1", "value": [{"text": "差旅费", "lang": "zh_CN"}]}],
                        }
                    },
                ),
                _control("Text", "报销事由", {"text": f"上海出差住宿 {sp_no}"}),
                _control("Date", "发生日期", {"date": {"type": "day", "s_timestamp": str(_stamp(occurred))}}),
                _control("Money", "报销金额", {"new_money": f"{1000 + n * 111}.50"}),
                *files,
                _control("Textarea", "备注", {"text": ""}),
            ]
        },
        "comments": [],
    }


def write_wecom_data(folder: Path) -> Path:
    """approvals/<sp_no>.json, media/<file_id> (+ .json) and users.json, as the peer serves them."""
    (folder / "approvals").mkdir(parents=True)
    (folder / "media").mkdir()
    infos = [approval(n, sp_no, with_receipt=n % 2 == 1) for n, sp_no in enumerate(GOOD, 1)]
    infos += [
        approval(7, REJECTED, status=3, with_receipt=False),
        approval(8, REVOKED, status=6, with_receipt=False),
        approval(9, NO_MEDIA, with_receipt=False),
    ]
    for info in infos:
        (folder / "approvals" / f"{info['sp_no']}.json").write_text(
            json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        for file_id in file_ids(info):
            if info["sp_no"] == NO_MEDIA:
                continue  # the invoice WeCom no longer has
            invoice = file_id.endswith("_invoice")
            name = f"数电票_{info['sp_no']}.ofd" if invoice else f"报销附件 行程单({info['sp_no'][-2:]}).pdf"
            kind = "application/ofd" if invoice else "application/pdf"
            (folder / "media" / file_id).write_bytes(_file_bytes(file_id, 40_000 if invoice else 9_000))
            (folder / "media" / f"{file_id}.json").write_text(
                json.dumps({"file_name": name, "content_type": kind}, ensure_ascii=False), encoding="utf-8"
            )
    users = {uid: {"userid": uid, "name": name, "department": [3]} for uid, name in USERS.items()}
    (folder / "users.json").write_text(json.dumps(users, ensure_ascii=False, indent=1), encoding="utf-8")
    return folder


def file_ids(info: dict[str, Any]) -> list[str]:
    return [
        f["file_id"]
        for c in info["apply_data"]["contents"]
        if c["control"] == "File"
        for f in c["value"]["files"]
    ]


def info_of(data_dir: Path, sp_no: str) -> dict[str, Any]:
    return json.loads((data_dir / "approvals" / f"{sp_no}.json").read_text(encoding="utf-8"))


# -- peers, streams, callbacks -----------------------------------------------------------------------------
_SHARED: dict[str, str] = {}  # the module peer's URL, for the standard suite's factory (no fixtures there)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wecom_data(tmp_path_factory.mktemp("wecom") / "data")


@pytest.fixture(scope="module", autouse=True)
def peer(data_dir: Path) -> Iterator[str]:
    """One peer for the tests that neither inject faults nor count calls."""
    process, url = start_wecom_peer(data_dir, data_dir.parent / "peer.log", corp_id=CORP_ID, secret=SECRET)
    _SHARED["url"] = url
    try:
        yield url
    finally:
        _SHARED.clear()
        stop_wecom_peer(process)


@pytest.fixture
def fresh_peer(data_dir: Path, tmp_path: Path) -> Iterator[PeerStarter]:
    """A peer of the test's own: its faults and counters are this test's alone."""
    started: list[subprocess.Popen[bytes]] = []

    def start(token_ttl: float = 7200) -> str:
        log = tmp_path / f"peer-{len(started)}.log"
        process, url = start_wecom_peer(data_dir, log, corp_id=CORP_ID, secret=SECRET, token_ttl=token_ttl)
        started.append(process)
        return url

    try:
        yield start
    finally:
        for process in started:
            stop_wecom_peer(process)


def make_stream(
    base_url: str, folder: Path, *, secret: str = SECRET, corp_id: str = CORP_ID
) -> WeComApprovalStream:
    http = HttpClient(SOURCE_ID, base_url, timeout=10, backoff=0.05)
    return WeComApprovalStream(
        SOURCE_ID,
        WeComApi(SOURCE_ID, base_url, corp_id, secret, http=http),
        CallbackCrypt(CALLBACK_TOKEN, CALLBACK_AES_KEY, CORP_ID),
        ApprovalInbox(folder / "inbox"),
        work_dir=folder / "work",
        quarantine_dir=folder / "quarantine",
        system="wecom",
    )


def sealed_callback(crypt: CallbackCrypt, sp_no: str, status: int) -> tuple[dict[str, str], bytes]:
    """(query parameters, body) of a sys_approval_change event as WeCom POSTs it."""
    message = approval_change_xml(
        corp_id=CORP_ID,
        agent_id=AGENT_ID,
        sp_no=sp_no,
        sp_status=status,
        sp_name="报销",
        template_id=TEMPLATE_ID,
        apply_time=1741570200,
        applyer_userid="ZhangWei",
    )
    timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
    encrypt, signature = crypt.seal(message, timestamp=timestamp, nonce=nonce)
    params = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
    return params, wecom_envelope(encrypt, to_user=CORP_ID, agent_id=AGENT_ID)


def announce(stream: WeComApprovalStream, sp_no: str, *statuses: int) -> list[Path]:
    """Keep WeCom's callbacks for `sp_no` in the stream's inbox, as the receiver would."""
    return [stream.inbox.put_callback(*sealed_callback(stream.crypt, sp_no, s)) for s in statuses]


def standard_stream(tmp_path: Path) -> WeComApprovalStream:
    """Six approvals: all submitted (1), then finished (2) in another order, so the records' order is the
    order of the finishing callbacks, not of the approval numbers."""
    stream = make_stream(_SHARED["url"], tmp_path)
    for sp_no in GOOD:
        announce(stream, sp_no, 1)
    for sp_no in [GOOD[3], GOOD[0], GOOD[5], GOOD[1], GOOD[4], GOOD[2]]:
        announce(stream, sp_no, 2)
    return stream


TestWeComApprovalStream = stream_test_class(standard_stream)


def token_of(base_url: str) -> str:
    answer = requests.get(
        f"{base_url}/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": SECRET}, timeout=10
    ).json()
    assert answer["errcode"] == 0, answer
    return str(answer["access_token"])


def detail_answer(base_url: str, sp_no: str) -> bytes:
    """getapprovaldetail's answer body, fetched here rather than through the code under test."""
    response = requests.post(
        f"{base_url}/cgi-bin/oa/getapprovaldetail",
        params={"access_token": token_of(base_url)},
        json={"sp_no": sp_no},
        timeout=10,
    )
    assert response.status_code == 200
    return response.content


def stats(base_url: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/_peer/stats", timeout=10).json()


def faults(base_url: str, **wanted: Any) -> None:
    response = requests.post(f"{base_url}/_peer/faults", json=wanted, timeout=10)
    assert response.status_code == 200, response.text


def kept_at(record: SourceRecord) -> Path:
    match = re.search(r"\(original kept at (.+)\)$", record.data["_refused"])
    assert match, record.data["_refused"]
    return Path(match.group(1))


def attachment_bytes(record: SourceRecord) -> dict[str, bytes]:
    return {a["name"]: Path(a["uri"]).read_bytes() for a in record.data["attachments"]}


# -- which callbacks become records -------------------------------------------------------------------------
def test_submitted_then_finished_is_one_record(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, GOOD[0], 1, 2)
    records = read_all(stream)
    assert [r.key for r in records] == [GOOD[0]]
    assert "_refused" not in records[0].data
    assert GOOD[0] not in stream.passed_over  # archived, so not "passed over (not finished)"


def test_rejected_approval_is_passed_over(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, REJECTED, 1, 3)
    assert read_all(stream) == []
    assert stream.passed_over == {REJECTED: "已驳回"}
    assert not (tmp_path / "quarantine").exists() or not any((tmp_path / "quarantine").iterdir())


def test_approval_revoked_after_the_callback_is_not_archived(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, REVOKED, 2)  # the callback says 已通过; WeCom's detail now says 6
    announce(stream, GOOD[1], 2)
    assert [r.key for r in read_all(stream)] == [GOOD[1]]
    assert "通过后撤销" in stream.passed_over[REVOKED]


# -- the record and its package -----------------------------------------------------------------------------
def test_record_holds_the_form_the_trail_and_the_exact_bytes(
    peer: str, data_dir: Path, tmp_path: Path
) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, GOOD[0], 1, 2)
    (record,) = read_all(stream)
    data = record.data
    info = info_of(data_dir, GOOD[0])
    applied = dt.datetime.fromtimestamp(info["apply_time"], TZ)
    assert data["sp_no"] == GOOD[0] and data["status"] == "已通过"
    assert (data["applicant"], data["applicant_userid"]) == ("李娜", "LiNa")  # name from users.json
    assert data["amount"] == "1111.50" and data["currency"] == "CNY"
    assert data["form"] == {
        "费用类型": "差旅费",
        "报销事由": f"上海出差住宿 {GOOD[0]}",
        "发生日期": (applied.date() - dt.timedelta(days=2)).isoformat(),
        "报销金额": "1111.50",
        "发票": "1个文件",
        "附件": "1个文件",
        "备注": "",
    }
    assert [(t["step"], t["name"], t["status"], t["speech"]) for t in data["trail"]] == [
        (1, "周杰", "已同意", "同意"),  # a step's own status codes, not the approval's
        (2, "孙丽华", "已同意", "同意"),
    ]
    finished = applied + dt.timedelta(hours=6)
    assert data["trail"][1]["time"] == finished.isoformat()
    assert data["finished_date"] == finished.date().isoformat()
    assert (data["fiscal_year"], data["period"]) == (2025, 3)
    assert data["agents"] == [
        {"role": "经办", "name": "李娜", "code": "LiNa"},
        {"role": "审批", "name": "周杰", "code": "ZhouJie"},
        {"role": "审批", "name": "孙丽华", "code": "SunLiHua"},
    ]
    invoice, receipt = file_ids(info)
    assert [(a["name"], a["media_type"]) for a in data["attachments"]] == [
        ("审批单.json", "application/json"),
        (f"数电票_{GOOD[0]}.ofd", "application/ofd"),
        ("报销附件 行程单(01).pdf", "application/pdf"),
    ]
    assert attachment_bytes(record) == {
        "审批单.json": detail_answer(peer, GOOD[0]),
        f"数电票_{GOOD[0]}.ofd": (data_dir / "media" / invoice).read_bytes(),
        "报销附件 行程单(01).pdf": (data_dir / "media" / receipt).read_bytes(),
    }
    assert all(a["size"] == Path(a["uri"]).stat().st_size for a in data["attachments"])


def test_record_maps_to_an_original_voucher_kept_30_years(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, GOOD[1], 2)
    (record,) = read_all(stream)
    mapping = load_mapping(REPO_ROOT / "mappings" / "wecom_approval.yaml")
    archived = mapping.apply(record.data, record.key, CONTEXT)
    assert archived.category.form is AccountingForm.VOUCHER and archived.category.item == "原始凭证"
    assert archived.retention is RetentionPeriod.Y30 and archived.retention.years == 30
    assert archived.source.business_id == GOOD[1] and archived.document_no == GOOD[1]
    assert archived.source.source_id == SOURCE_ID and archived.source.stream == "approvals"
    assert archived.amount_total == Decimal("1222.50")
    assert archived.title == f"报销 王芳 1222.50元 审批单号{GOOD[1]}"
    assert [(a.role.value, a.name) for a in archived.agents] == [
        ("经办", "王芳"),
        ("审批", "周杰"),
        ("审批", "孙丽华"),
    ]
    assert [a.name for a in archived.attachments] == ["审批单.json", f"数电票_{GOOD[1]}.ofd"]


# -- refusals: kept with a reason, the other approvals go on ----------------------------------------------
def test_inbox_message_altered_after_it_was_kept_is_refused(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    (path,) = announce(stream, GOOD[2], 2)
    announce(stream, GOOD[3], 2)
    entry = json.loads(path.read_bytes())
    _, other_body = sealed_callback(stream.crypt, GOOD[4], 2)  # a genuine body of another callback
    entry["body_b64"] = base64.b64encode(other_body).decode("ascii")
    path.write_bytes(json.dumps(entry).encode())
    altered = path.read_bytes()
    refused, good = read_all(stream)
    assert good.key == GOOD[3] and "_refused" not in good.data
    assert refused.key == f"inbox:{path.name}"
    assert path.name in refused.data["_refused"] and "signature mismatch" in refused.data["_refused"]
    assert kept_at(refused).parent == tmp_path / "quarantine"
    assert kept_at(refused).read_bytes() == altered


def test_approval_wecom_does_not_know_is_refused(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, UNKNOWN, 2)
    (record,) = read_all(stream)
    assert record.key == UNKNOWN
    reason = record.data["_refused"]
    assert UNKNOWN in reason and "does not know" in reason and "301025" in reason
    assert kept_at(record).is_file() and kept_at(record).parent == tmp_path / "quarantine"


def test_missing_media_file_is_refused_naming_the_control(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, NO_MEDIA, 2)
    announce(stream, GOOD[5], 2)
    refused, good = read_all(stream)
    assert good.key == GOOD[5] and "_refused" not in good.data
    assert refused.key == NO_MEDIA
    reason = refused.data["_refused"]
    assert NO_MEDIA in reason and "发票" in reason and "40007" in reason
    assert kept_at(refused).read_bytes() == detail_answer(peer, NO_MEDIA)  # the detail, as received


# -- faults of the peer --------------------------------------------------------------------------------------
def test_rate_limit_is_waited_out(fresh_peer: PeerStarter, data_dir: Path, tmp_path: Path) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], 2)
    faults(url, rate_limit_next=2)
    (record,) = read_all(stream)
    assert record.key == GOOD[0] and "_refused" not in record.data
    assert stream.api.http.retries >= 2
    invoice, _ = file_ids(info_of(data_dir, GOOD[0]))
    assert attachment_bytes(record)[f"数电票_{GOOD[0]}.ofd"] == (data_dir / "media" / invoice).read_bytes()


def test_file_cut_off_mid_transfer_is_fetched_again(
    fresh_peer: PeerStarter, data_dir: Path, tmp_path: Path
) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], 2)
    invoice, receipt = file_ids(info_of(data_dir, GOOD[0]))
    faults(url, truncate_media=invoice)
    (record,) = read_all(stream)
    assert "_refused" not in record.data
    assert attachment_bytes(record)[f"数电票_{GOOD[0]}.ofd"] == (data_dir / "media" / invoice).read_bytes()
    assert stream.api.http.retries == 1
    assert stats(url)["calls"]["media/get"] == 3  # two files, the cut one twice


def test_server_errors_beyond_the_retries_fail_the_run(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], 2)
    stream.check()
    token = token_of(url)  # within its validity WeCom hands out the stream's token again
    faults(url, server_error_next=stream.api.http.attempts + 5)
    with pytest.raises(TransientSourceError) as caught:
        read_all(stream)
    message = str(caught.value)
    assert "HTTP 503" in message and f"gave up after {stream.api.http.attempts} tries" in message
    assert token not in message and "access_token" not in message and SECRET not in message
    quarantine = tmp_path / "quarantine"
    assert not any(quarantine.iterdir())  # a failed run, not a quarantined approval


def test_stale_token_is_fetched_again_once(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], 2)
    stream.check()
    assert stats(url)["tokens_issued"] == 1
    faults(url, expire_tokens=True)  # the token the stream holds is answered with 42001 now
    (record,) = read_all(stream)
    assert record.key == GOOD[0] and "_refused" not in record.data
    after = stats(url)
    assert after["tokens_issued"] == 2
    assert after["calls"]["getapprovaldetail"] == 2  # the stale answer, then the same call again
    assert after["calls"]["gettoken"] == 2


def test_token_is_renewed_before_its_end(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    """A token is used for at most max(expires_in - 300 s, expires_in / 2): with 2 s, for 1 s."""
    url = fresh_peer(token_ttl=2)
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], 2)
    stream.check()
    time.sleep(2.2)  # past the peer's expiry: a stream still using the token would get 42001
    (record,) = read_all(stream)
    assert "_refused" not in record.data
    after = stats(url)
    assert after["tokens_issued"] >= 2
    assert after["calls"]["getapprovaldetail"] == 1  # no stale answer first


@pytest.mark.parametrize(
    ("corp_id", "secret", "setting"),
    [
        (CORP_ID, "wrong-secret-Hx71Pq", "connection.secret"),
        ("wwdoesnotexist000001", SECRET, "connection.corp_id"),
    ],
)
def test_wrong_credentials_are_a_config_error(
    peer: str, tmp_path: Path, corp_id: str, secret: str, setting: str
) -> None:
    stream = make_stream(peer, tmp_path, secret=secret, corp_id=corp_id)
    with pytest.raises(ConfigError) as caught:
        stream.check()
    assert caught.value.setting == setting and setting in str(caught.value)
    assert secret not in str(caught.value) and SECRET not in str(caught.value)
