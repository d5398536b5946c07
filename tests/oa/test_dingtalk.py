"""The DingTalk approval connector (connectors/oa/dingtalk.py) against the DingTalk peer process, the callback
receiver process and `archive-hub oa backfill`.

Why: a finished DingTalk 审批实例 must be archived as exactly what DingTalk answered (detail bytes, files as
downloaded over a pre-signed link without the token, comments' files and images, photos from the allowed
hosts only), what is refused must be kept with a reason, transient failures must fail the run rather than
quarantine good approvals, and no secret may reach a log, an answer or an error. The receiver faces the internet: it answers DingTalk's check_url and every accepted push with
the encrypted "success", keeps pushes byte for byte, and refuses forgeries.
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
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from archive_hub.pipeline.archiver import read_attachment
from archive_hub.sources import SourceConfig, build_stream, find_source
from archive_sink.package import build_package, safe_name
from canonical_model.record import AccountingForm
from canonical_model.retention import RetentionPeriod
from connectors.errors import ConfigError, TransientSourceError
from connectors.http import HttpClient
from connectors.oa.approval_inbox import ApprovalInbox
from connectors.oa.callback_crypto import CallbackCrypt
from connectors.oa.dingtalk import DingTalkApprovalStream, stream_from_config
from connectors.oa.dingtalk_api import DingTalkApi
from connectors.oa.dingtalk_peer import (
    PHOTO_BASE,
    approval_event,
    open_answer,
    send_approval_event,
    send_check_url,
)
from connectors.stream import Cursor, SourceRecord
from connectors.testing import read_all, stream_test_class
from mappings.engine import load_mapping
from tests.oa.dingtalk_server import REPO_ROOT, start_dingtalk_peer, stop_dingtalk_peer
from tests.s3_server import free_port

SOURCE_ID = "dingtalk_approvals"
APP_KEY = "dingq7x2m9k4c1v8z5na"  # the shape of a DingTalk AppKey; fictitious
SECRET = "dt-secret-" + secrets.token_urlsafe(24)  # values the tests look for where they must not be
CALLBACK_TOKEN = "dtTok" + secrets.token_urlsafe(10)
CALLBACK_AES_KEY = base64.b64encode(os.urandom(32)).decode("ascii").rstrip("=")
SECRETS = (SECRET, CALLBACK_TOKEN, CALLBACK_AES_KEY)
CRYPT = CallbackCrypt(CALLBACK_TOKEN, CALLBACK_AES_KEY, APP_KEY)
PROCESS_CODE = "PROC-7E1A2B3C-4D5E-46F7-8A9B-0C1D2E3F4A5B"
TZ = ZoneInfo("Asia/Shanghai")
CONTEXT = {
    "source_id": SOURCE_ID,
    "system": "dingtalk",
    "fonds_no": "J001",
    "fonds_name": "华东精密制造有限公司",
}
USERS = {"ZhangWei": "张伟", "LiNa": "李娜", "WangFang": "王芳", "ZhouJie": "周杰", "SunLiHua": "孙丽华"}
APPLICANTS = ["ZhangWei", "LiNa", "WangFang"]
HEAD, FINANCE = "ZhouJie", "SunLiHua"


def _instance_id(n: int) -> str:
    return f"a17444d1-075b-4a4d-9c3e-{n:012d}"


GOOD = [_instance_id(n) for n in range(1, 7)]  # finished and agreed, one or two files each
REFUSED = _instance_id(7)  # 拒绝: COMPLETED with result refuse
TERMINATED = _instance_id(8)  # the event said finish/agree, the detail now says TERMINATED (撤销)
NO_FILE = _instance_id(9)  # agreed, but DingTalk no longer has its 发票
SHORT_FILE = _instance_id(10)  # agreed, but its 发票 is shorter than the form's fileSize
RUNNING = _instance_id(11)  # 审批中
ATTACHED = _instance_id(12)  # agreed, with two photos, a comment's file and image, an approver's file
SHORT_COMMENT = _instance_id(13)  # as ATTACHED, but the comment's file is shorter than its fileSize
UNKNOWN = _instance_id(99)  # DingTalk has no such instance

PeerStarter = Callable[..., str]


# -- the DingTalk data the peer serves --------------------------------------------------------------------
def _utc(moment: dt.datetime) -> str:
    """DingTalk's time format: UTC to the minute, "2025-03-10T01:30Z"."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def business_id(n: int) -> str:
    return f"2025031009300000{n:03d}"


def file_id(n: int, kind: str) -> str:
    return f"2674842{n:03d}{1 if kind == 'invoice' else 2}"


def _file_bytes(fid: str, size: int) -> bytes:
    """Distinct binary content (every byte value occurs), so a changed or cut byte shows."""
    seed = hashlib.sha256(fid.encode()).digest()
    return ((seed + bytes(range(256))) * (size // 288 + 1))[:size]


def comment_file_id(n: int, who: str) -> str:
    return f"8813{n:03d}{1 if who == 'finance' else 2}"


def photo_name(n: int, k: int) -> str:
    return f"lADPM5Hil{n:03d}_{k}"


# (suffix, bytes header, the Content-Type the photo host sends): a JPEG as such, a PNG the host calls
# octet-stream (the bytes say image/png), a WebP the bytes here cannot tell (the Content-Type says image/webp).
PHOTO_KINDS = {
    1: (".jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    2: (".png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "application/octet-stream"),
    3: (".webp", b"RIFF\x00\x10\x00\x00WEBPVP8 ", "image/webp"),
}


def photo_url(n: int, k: int) -> str:
    return f"{PHOTO_BASE}/_photos/{photo_name(n, k)}{PHOTO_KINDS[k][0]}"


def photo_bytes(n: int, k: int) -> bytes:
    return PHOTO_KINDS[k][1] + _file_bytes(photo_name(n, k), 6_000 + 1_000 * k)


def _component(kind: str, name: str, value: Any, ext: Any = None) -> dict[str, Any]:
    digest = hashlib.sha256(name.encode()).hexdigest()[:8].upper()
    component = {"id": f"{kind}-K{digest}", "name": name, "value": value, "componentType": kind}
    if ext is not None:
        component["extValue"] = ext
    return component


def instance(
    n: int,
    pid: str,
    *,
    status: str = "COMPLETED",
    result: str = "agree",
    receipt: bool = True,
    attached: bool = False,
) -> dict:
    """获取单个审批实例详情's `result` for a 报销: applicant, head and finance, one 发票 (+ one 附件), a table;
    `attached`: two photos in a DDPhotoField, a file with the head's approval, a file and an image with
    finance's comment (ADD_REMARK)."""
    applied = dt.datetime(2025, 3, 10, 9, 30, tzinfo=TZ) + dt.timedelta(hours=n)
    applicant = APPLICANTS[n % len(APPLICANTS)]
    head_at, finance_at = applied + dt.timedelta(hours=3), applied + dt.timedelta(hours=6)
    finance_result = "REFUSE" if result == "refuse" else "AGREE"
    records = [
        {"userId": applicant, "date": _utc(applied), "type": "START_PROCESS_INSTANCE", "result": "NONE"},
        {
            "userId": HEAD,
            "date": _utc(head_at),
            "type": "EXECUTE_TASK_NORMAL",
            "result": "AGREE",
            "remark": "同意",
            "activityId": "act-head",
            "showName": "部门主管",
        },
        {
            "userId": FINANCE,
            "date": _utc(finance_at),
            "type": "ADD_REMARK",
            "result": "NONE",
            "remark": "已核对发票",
            "activityId": "act-finance",
        },
    ]
    if status == "COMPLETED":
        records.append(
            {
                "userId": FINANCE,
                "date": _utc(finance_at),
                "type": "EXECUTE_TASK_NORMAL",
                "result": finance_result,
                "remark": "同意" if finance_result == "AGREE" else "发票抬头不符",
                "activityId": "act-finance",
                "showName": "财务",
            }
        )
    if attached:
        records[1]["attachments"] = [remark_file(n, "head")]
        records[2]["attachments"] = [remark_file(n, "finance")]
        records[2]["images"] = [photo_url(n, 3)]
    files = [(file_id(n, "invoice"), f"数电票_{business_id(n)}", "ofd", 40_000)]
    if receipt:
        files.append((file_id(n, "receipt"), f"报销附件 行程单({n:02d}).pdf", "pdf", 9_000))

    def attachment(fid: str, name: str, kind: str, size: int) -> str:
        listed = [
            {
                "fileId": fid,
                "fileName": name,
                "fileSize": str(size),
                "fileType": kind,
                "spaceId": "3996960664",
            }
        ]
        return json.dumps(listed, ensure_ascii=False)

    rows = [
        {
            "rowValue": [
                {"label": "项目", "value": "住宿", "key": "TextField-KROW1"},
                {"label": "金额", "value": "800.00", "key": "MoneyField-KROW2"},
            ],
            "rowNumber": "TableField-KTAB_1",
        }
    ]
    amount = f"{1000 + n * 111}.50"
    form = [
        _component("DDSelectField", "费用类型", "差旅费"),
        _component("TextField", "报销事由", f"上海出差住宿 {business_id(n)}"),
        _component("DDDateField", "发生日期", (applied.date() - dt.timedelta(days=2)).isoformat()),
        _component("MoneyField", "报销金额", amount, json.dumps({"upper": "金额大写", "component": {}})),
        _component("TableField", "费用明细", json.dumps(rows, ensure_ascii=False)),
        _component("DDAttachment", "发票", attachment(*files[0])),
    ]
    if receipt:
        form.append(_component("DDAttachment", "附件", attachment(*files[1])))
    if attached:
        form.append(_component("DDPhotoField", "现场照片", json.dumps([photo_url(n, 1), photo_url(n, 2)])))
    form.append(_component("TextareaField", "备注", None))
    done = status != "RUNNING"
    return {
        "title": f"{USERS[applicant]}提交的报销",
        "finishTime": _utc(finance_at) if done else None,
        "originatorUserId": applicant,
        "originatorDeptId": "3",
        "originatorDeptName": "财务部",
        "status": status,
        "result": result if done else "",
        "businessId": business_id(n),
        "processCode": PROCESS_CODE,
        "operationRecords": records,
        "tasks": [
            {
                "taskId": 100 * n + 1,
                "userId": HEAD,
                "status": "COMPLETED",
                "result": "AGREE",
                "processInstanceId": pid,
            },
            {
                "taskId": 100 * n + 2,
                "userId": FINANCE,
                "status": "COMPLETED" if done else "RUNNING",
                "result": finance_result if done else "",
                "processInstanceId": pid,
            },
        ],
        "bizAction": "NONE",
        "formComponentValues": form,
        "createTime": _utc(applied),
    }


def remark_file(n: int, who: str) -> dict[str, str]:
    """An operationRecord's attachment as DingTalk lists it (fileSize is text there)."""
    name, kind, size = ("核对说明", "pdf", 7_000) if who == "finance" else ("预算说明", "pdf", 5_000)
    return {
        "fileId": comment_file_id(n, who),
        "fileName": f"{name}.{kind}",
        "fileSize": str(size),
        "fileType": kind,
        "spaceId": "3996960664",
    }


def write_dingtalk_data(folder: Path) -> Path:
    """instances/<id>.json, files/<fileId> (+ .json), photos/<name> (+ .json) and users.json, as the peer
    serves them."""
    (folder / "instances").mkdir(parents=True)
    (folder / "files").mkdir()
    (folder / "photos").mkdir()
    made = [(n, pid, instance(n, pid, receipt=n % 2 == 1)) for n, pid in enumerate(GOOD, 1)]
    made += [
        (7, REFUSED, instance(7, REFUSED, result="refuse", receipt=False)),
        (8, TERMINATED, instance(8, TERMINATED, status="TERMINATED", result="", receipt=False)),
        (9, NO_FILE, instance(9, NO_FILE, receipt=False)),
        (10, SHORT_FILE, instance(10, SHORT_FILE, receipt=False)),
        (11, RUNNING, instance(11, RUNNING, status="RUNNING", receipt=False)),
        (12, ATTACHED, instance(12, ATTACHED, receipt=False, attached=True)),
        (13, SHORT_COMMENT, instance(13, SHORT_COMMENT, receipt=False, attached=True)),
    ]
    for _, pid, result in made:
        (folder / "instances" / f"{pid}.json").write_text(
            json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        for f in listed_files(result):
            if pid == NO_FILE:
                continue  # the invoice DingTalk no longer has
            size = int(f["fileSize"]) - (100 if pid == SHORT_FILE else 0)
            (folder / "files" / f["fileId"]).write_bytes(_file_bytes(f["fileId"], size))
            kind = "application/ofd" if f["fileType"] == "ofd" else "application/octet-stream"
            (folder / "files" / f"{f['fileId']}.json").write_text(
                json.dumps({"file_name": f["fileName"], "content_type": kind}), encoding="utf-8"
            )
        for f in remarked_files(result):
            short = 100 if pid == SHORT_COMMENT and f["fileName"] == "核对说明.pdf" else 0
            (folder / "files" / f["fileId"]).write_bytes(_file_bytes(f["fileId"], int(f["fileSize"]) - short))
        for n, k in [(n, k) for k in PHOTO_KINDS for n in (12, 13)]:
            suffix, _, kind = PHOTO_KINDS[k]
            (folder / "photos" / f"{photo_name(n, k)}{suffix}").write_bytes(photo_bytes(n, k))
            (folder / "photos" / f"{photo_name(n, k)}{suffix}.json").write_text(
                json.dumps({"content_type": kind}), encoding="utf-8"
            )
    users = {uid: {"name": name, "title": "职员"} for uid, name in USERS.items()}
    (folder / "users.json").write_text(json.dumps(users, ensure_ascii=False, indent=1), encoding="utf-8")
    return folder


def listed_files(result: dict[str, Any]) -> list[dict[str, str]]:
    return [
        f
        for c in result["formComponentValues"]
        if c["componentType"] == "DDAttachment"
        for f in json.loads(c["value"])
    ]


def remarked_files(result: dict[str, Any]) -> list[dict[str, str]]:
    return [f for r in result["operationRecords"] for f in r.get("attachments") or []]


def result_of(data_dir: Path, pid: str) -> dict[str, Any]:
    return json.loads((data_dir / "instances" / f"{pid}.json").read_text(encoding="utf-8"))


# -- peers, streams, events ------------------------------------------------------------------------------
_SHARED: dict[str, str] = {}  # the module peer's URL, for the standard suite's factory (no fixtures there)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dingtalk_data(tmp_path_factory.mktemp("dingtalk") / "data")


@pytest.fixture(scope="module", autouse=True)
def peer(data_dir: Path) -> Iterator[str]:
    """One peer for the tests that neither inject faults nor count calls; its log is checked last."""
    process, url = start_dingtalk_peer(data_dir, data_dir.parent / "peer.log", app_key=APP_KEY, secret=SECRET)
    _SHARED["url"] = url
    try:
        yield url
    finally:
        _SHARED.clear()
        stop_dingtalk_peer(process)


@pytest.fixture
def fresh_peer(data_dir: Path, tmp_path: Path) -> Iterator[PeerStarter]:
    """A peer of the test's own: its faults and counters are this test's alone."""
    started: list[subprocess.Popen[bytes]] = []

    def start(token_ttl: float = 7200, data: Path | None = None) -> str:
        log = tmp_path / f"peer-{len(started)}.log"
        process, url = start_dingtalk_peer(
            data or data_dir, log, app_key=APP_KEY, secret=SECRET, token_ttl=token_ttl
        )
        started.append(process)
        return url

    try:
        yield start
    finally:
        for process in started:
            stop_dingtalk_peer(process)


def make_stream(
    base_url: str,
    folder: Path,
    *,
    secret: str = SECRET,
    app_key: str = APP_KEY,
    templates: tuple[str, ...] = (),
    photo_hosts: tuple[str, ...] = ("127.0.0.1",),  # the peer's host serves the photos
) -> DingTalkApprovalStream:
    http = HttpClient(SOURCE_ID, base_url, timeout=10, backoff=0.05)
    return DingTalkApprovalStream(
        SOURCE_ID,
        DingTalkApi(SOURCE_ID, base_url, base_url, app_key, secret, http=http, photo_hosts=photo_hosts),
        CRYPT,
        ApprovalInbox(folder / "inbox"),
        work_dir=folder / "work",
        quarantine_dir=folder / "quarantine",
        templates=templates,
    )


def sealed(crypt: CallbackCrypt, event: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """(query parameters, body) of an event push as DingTalk sends it."""
    timestamp, nonce = str(int(time.time() * 1000)), secrets.token_hex(4)
    encrypt, signature = crypt.seal(json.dumps(event, ensure_ascii=False), timestamp=timestamp, nonce=nonce)
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}, json.dumps(
        {"encrypt": encrypt}
    ).encode()


def event(pid: str, kind: str = "finish", result: str = "agree") -> dict[str, Any]:
    n = int(pid.rsplit("-", 1)[1])
    return approval_event(
        process_instance_id=pid,
        type=kind,
        result=result,
        process_code=PROCESS_CODE,
        business_id=business_id(n),
        staff_id="LiNa",
    )


def announce(stream: DingTalkApprovalStream, pid: str, *kinds: str) -> list[Path]:
    """Keep DingTalk's pushes for `pid` in the stream's inbox, as the receiver would ("finish" is agreed)."""
    return [stream.inbox.put_callback(*sealed(CRYPT, event(pid, kind))) for kind in kinds]


def standard_stream(tmp_path: Path) -> DingTalkApprovalStream:
    """Six instances: all started, then finished in another order, so the records' order is the order of the
    finishing pushes, not of the ids."""
    stream = make_stream(_SHARED["url"], tmp_path)
    for pid in GOOD:
        announce(stream, pid, "start")
    for pid in [GOOD[3], GOOD[0], GOOD[5], GOOD[1], GOOD[4], GOOD[2]]:
        announce(stream, pid, "finish")
    return stream


TestDingTalkApprovalStream = stream_test_class(standard_stream)


def token_of(base_url: str) -> str:
    answer = requests.post(
        f"{base_url}/v1.0/oauth2/accessToken", json={"appKey": APP_KEY, "appSecret": SECRET}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["accessToken"])


def detail_answer(base_url: str, pid: str) -> bytes:
    """The detail answer's body, fetched here rather than through the code under test."""
    response = requests.get(
        f"{base_url}/v1.0/workflow/processInstances",
        params={"processInstanceId": pid},
        headers={"x-acs-dingtalk-access-token": token_of(base_url)},
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


# -- which pushes become records ------------------------------------------------------------------------
def test_started_then_finished_is_one_record(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, GOOD[0], "start", "finish")
    (record,) = read_all(stream)
    assert record.key == GOOD[0] and "_refused" not in record.data
    assert GOOD[0] not in stream.passed_over


def test_refused_running_and_withdrawn_instances_are_passed_over(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    stream.inbox.put_callback(*sealed(CRYPT, event(REFUSED, "finish", "refuse")))
    announce(stream, RUNNING, "start")
    announce(stream, GOOD[2], "terminate")
    stream.inbox.put_callback(*sealed(CRYPT, {"EventType": "user_add_org", "UserId": ["LiNa"]}))
    assert read_all(stream) == []
    assert stream.passed_over == {REFUSED: "已拒绝", RUNNING: "审批中", GOOD[2]: "已撤销"}
    assert stream.revoked == {GOOD[2]: "已撤销"}  # noted for reconciliation, should it have been archived
    assert not (tmp_path / "quarantine").exists() or not any((tmp_path / "quarantine").iterdir())


def test_instance_withdrawn_after_the_push_is_not_archived(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, TERMINATED, "finish")  # the push said agreed; the detail now says TERMINATED
    announce(stream, GOOD[1], "finish")
    assert [r.key for r in read_all(stream)] == [GOOD[1]]
    assert stream.passed_over[TERMINATED] == "now 已撤销" and TERMINATED in stream.revoked


def test_process_codes_not_configured_are_passed_over(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path, templates=("PROC-OTHER",))
    announce(stream, GOOD[0], "finish")
    assert read_all(stream) == []
    assert "not configured" in stream.passed_over[GOOD[0]]


# -- the record and its package -----------------------------------------------------------------------------
def test_record_holds_the_form_the_trail_and_the_exact_bytes(
    peer: str, data_dir: Path, tmp_path: Path
) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, GOOD[0], "start", "finish")
    (record,) = read_all(stream)
    data = record.data
    applied = dt.datetime(2025, 3, 10, 10, 30, tzinfo=TZ)
    assert data["sp_no"] == GOOD[0] and data["document_no"] == business_id(1)
    assert (data["status"], data["sp_name"], data["template_id"]) == ("已通过", "报销", PROCESS_CODE)
    assert (data["applicant"], data["applicant_userid"]) == ("李娜", "LiNa")  # name from 查询用户详情
    assert data["amount"] == "1111.50" and data["currency"] == "CNY"  # the form's total, not the table row's
    assert data["form"] == {
        "费用类型": "差旅费",
        "报销事由": f"上海出差住宿 {business_id(1)}",
        "发生日期": (applied.date() - dt.timedelta(days=2)).isoformat(),
        "报销金额": "1111.50",
        "费用明细[1].项目": "住宿",
        "费用明细[1].金额": "800.00",
        "发票": "1个文件",
        "附件": "1个文件",
        "备注": "",
    }
    assert [(t["step"], t["name"], t["status"], t["speech"]) for t in data["trail"]] == [
        (1, "周杰", "已同意", "同意"),
        (2, "孙丽华", "已同意", "同意"),  # the comment (ADD_REMARK) is not a step of the trail
    ]
    finished = applied + dt.timedelta(hours=6)
    assert data["trail"][1]["time"] == finished.isoformat() == data["finished_at"]
    assert (data["finished_date"], data["fiscal_year"], data["period"]) == (
        finished.date().isoformat(),
        2025,
        3,
    )
    assert data["agents"] == [
        {"role": "经办", "name": "李娜", "code": "LiNa"},
        {"role": "审批", "name": "周杰", "code": "ZhouJie"},
        {"role": "审批", "name": "孙丽华", "code": "SunLiHua"},
    ]
    assert [(a["name"], a["media_type"]) for a in data["attachments"]] == [
        ("审批单.json", "application/json"),
        (f"数电票_{business_id(1)}.ofd", "application/ofd"),
        ("报销附件 行程单(01).pdf", "application/pdf"),  # octet-stream from the link: the form's fileType
    ]
    assert attachment_bytes(record) == {
        "审批单.json": detail_answer(peer, GOOD[0]),
        f"数电票_{business_id(1)}.ofd": (data_dir / "files" / file_id(1, "invoice")).read_bytes(),
        "报销附件 行程单(01).pdf": (data_dir / "files" / file_id(1, "receipt")).read_bytes(),
    }
    assert all(a["size"] == Path(a["uri"]).stat().st_size for a in data["attachments"])
    assert stats(peer)["downloads_with_token"] == 0  # the pre-signed link is fetched without the token


def test_record_maps_to_an_original_voucher_kept_30_years(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, GOOD[1], "finish")
    (record,) = read_all(stream)
    mapping = load_mapping(REPO_ROOT / "mappings" / "dingtalk_approval.yaml")
    archived = mapping.apply(record.data, record.key, CONTEXT)
    assert archived.category.form is AccountingForm.VOUCHER and archived.category.item == "原始凭证"
    assert archived.retention is RetentionPeriod.Y30 and archived.retention.years == 30
    assert archived.source.business_id == GOOD[1] and archived.document_no == business_id(2)
    assert archived.source.source_id == SOURCE_ID and archived.source.stream == "approvals"
    assert archived.source.system == "dingtalk"
    assert archived.amount_total == Decimal("1222.50")
    assert archived.title == f"报销 王芳 1222.50元 审批编号{business_id(2)}"
    assert [(a.role.value, a.name) for a in archived.agents] == [
        ("经办", "王芳"),
        ("审批", "周杰"),
        ("审批", "孙丽华"),
    ]
    assert [a.name for a in archived.attachments] == ["审批单.json", f"数电票_{business_id(2)}.ofd"]


# -- photos and what comments carry --------------------------------------------------------------------------
HEAD_REMARK = "审批意见附件 (周杰 2025-03-11 00:30)"  # ATTACHED (n 12) applied 21:30, head +3 h, finance +6 h
COMMENT = "评论附件 (孙丽华 2025-03-11 03:30)"


def test_photos_and_comment_files_are_archived_byte_for_byte(
    peer: str, data_dir: Path, tmp_path: Path
) -> None:
    """DDPhotoField images and the files and images of an approver's remark and a comment land in the
    package as fetched, named after where they were attached; the form still says how many photos."""
    stream = make_stream(peer, tmp_path)
    announce(stream, ATTACHED, "finish")
    (record,) = read_all(stream)
    assert "_refused" not in record.data, record.data.get("_refused")
    assert record.data["form"]["现场照片"] == "2张图片"
    photos, files = data_dir / "photos", data_dir / "files"
    expected = {
        "审批单.json": ("application/json", detail_answer(peer, ATTACHED)),
        f"数电票_{business_id(12)}.ofd": ("application/ofd", (files / file_id(12, "invoice")).read_bytes()),
        "现场照片 1.jpg": ("image/jpeg", (photos / f"{photo_name(12, 1)}.jpg").read_bytes()),
        "现场照片 2.png": ("image/png", (photos / f"{photo_name(12, 2)}.png").read_bytes()),  # by its bytes
        f"{HEAD_REMARK} 预算说明.pdf": (
            "application/pdf",
            (files / comment_file_id(12, "head")).read_bytes(),
        ),
        f"{COMMENT} 核对说明.pdf": ("application/pdf", (files / comment_file_id(12, "finance")).read_bytes()),
        f"{COMMENT}.webp": ("image/webp", (photos / f"{photo_name(12, 3)}.webp").read_bytes()),  # by its type
    }
    assert [(a["name"], a["media_type"]) for a in record.data["attachments"]] == [
        (name, kind) for name, (kind, _) in expected.items()
    ]
    assert attachment_bytes(record) == {name: data for name, (_, data) in expected.items()}
    assert stats(peer)["downloads_with_token"] == 0  # photos and links are fetched without the token

    # The package: every file read back and checked as the archive step does, hashed into the manifest.
    archived = load_mapping(REPO_ROOT / "mappings" / "dingtalk_approval.yaml").apply(
        record.data, record.key, CONTEXT
    )
    read = [read_attachment(archived, i) for i in range(len(archived.attachments))]
    package = build_package(
        archived,
        read,
        archival_code="J001-2025-KJ01-30Y-0001",
        item_no=1,
        version=1,
        archived_at=dt.datetime(2025, 3, 12, tzinfo=dt.UTC),
        retention_due=None,
    )
    held = {f.path: f.sha256 for f in package.payload if f.role == "attachment"}
    assert held == {
        f"data/attachments/{i:02d}-{safe_name(name)}": hashlib.sha256(data).hexdigest()
        for i, (name, (_, data)) in enumerate(expected.items(), 1)
    }


def test_comment_files_are_given_only_when_asked_for_with_the_comment_flag(peer: str) -> None:
    """The peer as DingTalk: 下载审批附件 ignores comments' files unless withCommentAttatchment is true."""
    path = "/v1.0/workflow/processInstances/spaces/files/urls/download"
    headers = {"x-acs-dingtalk-access-token": token_of(peer)}

    def ask(fid: str, flag: bool | None) -> requests.Response:
        body: dict[str, Any] = {"processInstanceId": ATTACHED, "fileId": fid}
        if flag is not None:
            body["withCommentAttatchment"] = flag
        return requests.post(peer + path, json=body, headers=headers, timeout=10)

    comment, invoice = comment_file_id(12, "finance"), file_id(12, "invoice")
    for flag in (None, False):
        refused = ask(comment, flag)
        assert refused.status_code == 400 and refused.json()["code"] == "noPermission"
    assert ask(comment, True).json()["result"]["fileId"] == comment
    assert ask(invoice, True).status_code == 200 and ask(invoice, False).status_code == 200


@pytest.mark.parametrize(
    ("fault", "said", "photo_calls"),
    [
        ("photo_host", "the photo's host localhost is not in connection.photo_hosts (127.0.0.1)", 0),
        ("redirect_photos", "HTTP 302, a redirect (not followed", 1),  # not to localhost
    ],
)
def test_photo_elsewhere_than_photo_hosts_refuses_the_approval(
    fresh_peer: PeerStarter, tmp_path: Path, fault: str, said: str, photo_calls: int
) -> None:
    """A photo URL in the form naming another host (here localhost: the same peer, so a fetch would have
    worked), or a photo host redirecting there, refuses the approval with the detail kept; nothing is
    fetched from that host."""
    url = fresh_peer()
    faults(url, **{fault: "localhost"})
    stream = make_stream(url, tmp_path)
    announce(stream, ATTACHED, "finish")
    (record,) = read_all(stream)
    reason = record.data["_refused"]
    assert record.key == ATTACHED and "现场照片: file 2 (现场照片 1)" in reason and said in reason
    assert kept_at(record).read_bytes() == detail_answer(url, ATTACHED)
    assert stats(url)["calls"].get("photos", 0) == photo_calls


def test_photo_that_is_no_image_or_too_large_is_refused(
    fresh_peer: PeerStarter, peer: str, tmp_path: Path
) -> None:
    data = write_dingtalk_data(tmp_path / "dingtalk")
    page = data / "photos" / f"{photo_name(12, 1)}.jpg"
    page.write_bytes(b"<html><body>\xe7\x99\xbb\xe5\xbd\x95</body></html>")  # a login page, not a photo
    (data / "photos" / f"{page.name}.json").write_text(json.dumps({"content_type": "text/html"}))
    stream = make_stream(fresh_peer(data=data), tmp_path / "a")
    announce(stream, ATTACHED, "finish")
    (record,) = read_all(stream)
    assert (
        "现场照片: file 2" in record.data["_refused"] and "not an image (text/html" in record.data["_refused"]
    )

    stream = make_stream(peer, tmp_path / "b")
    stream.api.photo_max_bytes = 5_000  # the photos are 7 and 8 kB
    announce(stream, ATTACHED, "finish")
    (record,) = read_all(stream)
    assert "现场照片: file 2" in record.data["_refused"] and "more than 5000" in record.data["_refused"]


# -- refusals: kept with a reason, the other approvals go on ----------------------------------------------
def test_inbox_message_altered_after_it_was_kept_is_refused(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    (path,) = announce(stream, GOOD[2], "finish")
    announce(stream, GOOD[3], "finish")
    entry = json.loads(path.read_bytes())
    _, other_body = sealed(CRYPT, event(GOOD[4]))  # a genuine body of another push
    entry["body_b64"] = base64.b64encode(other_body).decode("ascii")
    path.write_bytes(json.dumps(entry).encode())
    altered = path.read_bytes()
    refused, good = read_all(stream)
    assert good.key == GOOD[3] and "_refused" not in good.data
    assert refused.key == f"inbox:{path.name}" and "signature mismatch" in refused.data["_refused"]
    assert kept_at(refused).parent == tmp_path / "quarantine" and kept_at(refused).read_bytes() == altered


def test_instance_dingtalk_does_not_know_is_refused(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    (pushed,) = announce(stream, UNKNOWN, "finish")
    (record,) = read_all(stream)
    reason = record.data["_refused"]
    assert record.key == UNKNOWN and "does not know" in reason and "processInstanceNotExist" in reason
    assert kept_at(record).read_bytes() == pushed.read_bytes()  # the push that named it, as kept


@pytest.mark.parametrize(
    ("pid", "field", "said"),
    [
        (NO_FILE, "发票", "hsfIntegrationErrorCspaceDentryServiceGenerateDownloadPresignedUrl"),
        (SHORT_FILE, "发票", "fileSize"),
        (
            SHORT_COMMENT,
            f"评论附件 (孙丽华 2025-03-11 04:30): file 5 ({comment_file_id(13, 'finance')})",
            "the form says 7000 (fileSize)",
        ),
    ],
)
def test_file_that_cannot_be_had_whole_is_refused_naming_the_field(
    peer: str, tmp_path: Path, pid: str, field: str, said: str
) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, pid, "finish")
    announce(stream, GOOD[5], "finish")
    refused, good = read_all(stream)
    assert good.key == GOOD[5] and "_refused" not in good.data
    reason = refused.data["_refused"]
    assert refused.key == pid and field in reason and said in reason
    assert kept_at(refused).read_bytes() == detail_answer(peer, pid)  # the detail, as received


# -- faults of the peer --------------------------------------------------------------------------------------
def test_rate_limits_are_waited_out(fresh_peer: PeerStarter, data_dir: Path, tmp_path: Path) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], "finish")
    stream.check()
    faults(url, rate_limit_next=2, too_many_requests_next=1)  # QpsLimitForApi (403) twice, HTTP 429 once
    (record,) = read_all(stream)
    assert "_refused" not in record.data and stream.api.http.retries == 3
    invoice = file_id(1, "invoice")
    assert (
        attachment_bytes(record)[f"数电票_{business_id(1)}.ofd"]
        == (data_dir / "files" / invoice).read_bytes()
    )


def test_user_lookup_rate_limit_is_waited_out(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    stream.check()
    faults(url, rate_limit_next=1)  # oapi answers errcode 90018 with HTTP 200
    assert stream.api.user_name("LiNa") == "李娜" and stream.api.oapi.retries == 1
    assert stream.api.user_name("LeftLongAgo") == "LeftLongAgo"  # 60121: the userid itself


def test_file_cut_off_mid_transfer_is_fetched_again(
    fresh_peer: PeerStarter, data_dir: Path, tmp_path: Path
) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], "finish")
    invoice = file_id(1, "invoice")
    faults(url, truncate_file=invoice)
    (record,) = read_all(stream)
    assert "_refused" not in record.data and stream.api.http.retries == 1
    assert (
        attachment_bytes(record)[f"数电票_{business_id(1)}.ofd"]
        == (data_dir / "files" / invoice).read_bytes()
    )
    assert stats(url)["calls"]["oss"] == 3  # two files, the cut one twice


def test_expired_download_link_is_asked_for_again_once(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], "finish")
    faults(url, expire_links_next=1)
    (record,) = read_all(stream)
    assert "_refused" not in record.data
    assert stats(url)["calls"]["files/urls/download"] == 3  # two files, the first link twice


def test_server_errors_beyond_the_retries_fail_the_run(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], "finish")
    stream.check()
    token = token_of(url)  # within its validity DingTalk hands out the stream's token again
    faults(url, server_error_next=stream.api.http.attempts + 5)
    with pytest.raises(TransientSourceError) as caught:
        read_all(stream)
    message = str(caught.value)
    assert "HTTP 503" in message and f"gave up after {stream.api.http.attempts} tries" in message
    assert token not in message and SECRET not in message
    assert not any((tmp_path / "quarantine").iterdir())  # a failed run, not a quarantined approval


def test_stale_token_is_fetched_again_once(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    url = fresh_peer()
    stream = make_stream(url, tmp_path)
    announce(stream, GOOD[0], "finish")
    stream.check()
    assert stats(url)["tokens_issued"] == 1
    faults(url, expire_tokens=True)  # the token the stream holds is answered with 401 InvalidAuthentication
    (record,) = read_all(stream)
    assert "_refused" not in record.data
    after = stats(url)
    assert after["tokens_issued"] == 2 and after["calls"]["accessToken"] == 2
    assert after["calls"]["processInstances"] == 2  # the stale answer, then the same call again


@pytest.mark.parametrize(
    ("app_key", "secret"), [(APP_KEY, "wrong-secret-Hx71Pq"), ("dingdoesnotexist0001", SECRET)]
)
def test_wrong_credentials_are_a_config_error(peer: str, tmp_path: Path, app_key: str, secret: str) -> None:
    stream = make_stream(peer, tmp_path, secret=secret, app_key=app_key)
    with pytest.raises(ConfigError) as caught:
        stream.check()
    message = str(caught.value)
    assert caught.value.setting == "connection.app_secret" and "connection.app_key" in message
    assert secret not in message and SECRET not in message


def _config(**connection: Any) -> SourceConfig:
    base = {
        "base_url": "https://api.dingtalk.com",
        "app_key": APP_KEY,
        "app_secret": SECRET,
        "callback": {"token": CALLBACK_TOKEN, "aes_key": CALLBACK_AES_KEY},
    }
    lookback = connection.pop("lookback_seconds", 600)
    return SourceConfig.model_validate(
        {
            "id": SOURCE_ID,
            "kind": "oa.dingtalk",
            "system": "dingtalk",
            "connection": {**base, **connection},
            "mapping": "mappings/dingtalk_approval.yaml",
            "fonds": {"fonds_no": "J001", "fonds_name": "华东精密制造有限公司"},
            "lookback_seconds": lookback,
        }
    )


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"base_url": "ftp://api.dingtalk.com"}, "connection.base_url"),
        ({"oapi_url": "oapi.dingtalk.com"}, "connection.oapi_url"),
        ({"app_secret": ""}, "connection.app_secret"),
        ({"callback": {"token": CALLBACK_TOKEN, "aes_key": "short"}}, "connection.callback.aes_key"),
        ({"callback": {"aes_key": CALLBACK_AES_KEY}}, "connection.callback.token"),
        ({"agent_id": "3010040"}, "connection.agent_id"),
        ({"photo_hosts": "https://static.dingtalk.com"}, "connection.photo_hosts"),
        ({"photo_hosts": {"host": "static.dingtalk.com"}}, "connection.photo_hosts"),
        ({"timezone": "Mars/Olympus"}, "connection.timezone"),
        ({"lookback_seconds": 30}, "lookback_seconds"),
    ],
)
def test_settings_are_checked_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], setting: str
) -> None:
    monkeypatch.setenv("ARCHIVE_HUB_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        stream_from_config(_config(**change))
    assert caught.value.setting == setting
    assert not any(s in str(caught.value) for s in SECRETS)


def test_process_codes_may_come_as_one_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVE_HUB_HOME", str(tmp_path))
    stream = stream_from_config(_config(templates=f" {PROCESS_CODE}, PROC-OTHER ,"))
    assert stream.templates == {PROCESS_CODE, "PROC-OTHER"}
    assert stream.api.oapi.base_url == "https://oapi.dingtalk.com"  # the default host of 查询用户详情
    assert stream.api.photo_hosts == {"static.dingtalk.com"}  # DingTalk's, unless configured
    configured = stream_from_config(_config(photo_hosts="static.dingtalk.com, Img.Alicdn.com,"))
    assert configured.api.photo_hosts == {"static.dingtalk.com", "img.alicdn.com"}
    assert SECRET not in repr(stream.api)


# -- the callback receiver (a real process) ---------------------------------------------------------------
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


def hub_env(home: Path, peer_url: str = "") -> dict[str, str]:
    """This test's hub home and DingTalk settings only, none of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_HUB_", "DINGTALK_", "WECOM_"))}
    env |= {
        "ARCHIVE_HUB_HOME": str(home),
        "DINGTALK_APP_KEY": APP_KEY,
        "DINGTALK_APP_SECRET": SECRET,
        "DINGTALK_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "DINGTALK_CALLBACK_AES_KEY": CALLBACK_AES_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    if peer_url:
        env |= {"DINGTALK_API_URL": peer_url, "DINGTALK_OAPI_URL": peer_url}
    return env


def start_receiver(home: Path) -> Receiver:
    """`archive-hub oa serve` on a free port, returned once it answers HTTP."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "receiver.log"
    command = [sys.executable, "-m", "archive_hub.cli", "oa", "serve", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=hub_env(home)
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


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def post(url: str, params: dict[str, str], body: bytes) -> requests.Response:
    return requests.post(
        url, params=params, data=body, headers={"Content-Type": "application/json"}, timeout=30
    )


def test_check_url_is_answered_with_the_encrypted_success_and_not_kept(receiver: Receiver) -> None:
    before, refused_before = names(receiver.inbox), names(receiver.refused)
    answers = [send_check_url(receiver.url, CRYPT) for _ in range(2)]  # send_check_url checks the answer too
    opened = []
    for response in answers:
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
        answer = json.loads(response.content)
        assert set(answer) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
        opened.append(open_answer(CRYPT, answer))  # signature checked, then decrypted, here in the test
    assert opened == ["success", "success"]
    first, second = (json.loads(r.content) for r in answers)
    assert (first["nonce"], first["encrypt"]) != (second["nonce"], second["encrypt"])  # fresh each time
    assert (names(receiver.inbox), names(receiver.refused)) == (before, refused_before)


def test_finished_event_is_kept_byte_for_byte(receiver: Receiver) -> None:
    before = names(receiver.inbox)
    params, body = sealed(CRYPT, event(GOOD[0]))
    answer = post(receiver.url, params, body)
    assert answer.status_code == 200 and open_answer(CRYPT, answer.json()) == "success"
    (new,) = names(receiver.inbox) - before
    kept = json.loads((receiver.inbox / new).read_bytes())
    assert kept["kind"] == "callback" and base64.b64decode(kept["body_b64"]) == body
    assert {k: kept[k] for k in params} == params
    response = send_approval_event(
        receiver.url,
        CRYPT,
        app_key=APP_KEY,
        process_instance_id=GOOD[1],
        type="finish",
        result="agree",
        process_code=PROCESS_CODE,
        business_id=business_id(2),
    )
    assert response.status_code == 200 and len(names(receiver.inbox) - before) == 2


def forged() -> tuple[dict[str, str], bytes]:
    """Sealed with the right aes_key and app key, signed with another token."""
    return sealed(CallbackCrypt("another-token-1234", CALLBACK_AES_KEY, APP_KEY), event(GOOD[0]))


def other_app() -> tuple[dict[str, str], bytes]:
    """Signed with the right token, sealed for another app key."""
    return sealed(CallbackCrypt(CALLBACK_TOKEN, CALLBACK_AES_KEY, "dinganotherapp000001"), event(GOOD[0]))


def not_json() -> tuple[dict[str, str], bytes]:
    params, _ = sealed(CRYPT, event(GOOD[0]))
    return params, b"<xml><Encrypt>x</Encrypt></xml>"


@pytest.mark.parametrize(
    ("make", "reason"),
    [(forged, "signature mismatch"), (other_app, "receive id mismatch"), (not_json, "not a JSON envelope")],
)
def test_bad_push_is_refused_and_kept(
    receiver: Receiver, make: Callable[[], tuple[dict[str, str], bytes]], reason: str
) -> None:
    params, body = make()
    inbox_before, refused_before = names(receiver.inbox), names(receiver.refused)
    answer = post(receiver.url, params, body)
    assert answer.status_code == 403 and reason in answer.text
    assert names(receiver.inbox) == inbox_before
    (new,) = names(receiver.refused) - refused_before
    kept = json.loads((receiver.refused / new).read_bytes())
    assert kept["kind"] == "refused" and kept["reason"] == reason
    assert base64.b64decode(kept["body_b64"]) == body
    assert {k: kept["params"][k] for k in params} == params


def test_get_is_no_dingtalk_request(receiver: Receiver) -> None:
    answer = requests.get(
        receiver.url, params={"signature": "0" * 40, "timestamp": "1", "nonce": "2"}, timeout=10
    )
    assert answer.status_code == 403 and "not a DingTalk request" in answer.text


def test_kept_push_is_archived_by_the_configured_source(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repo's config/sources/dingtalk_approvals.yaml reads the receiver's inbox, archives from the peer."""
    params, body = sealed(CRYPT, event(GOOD[4]))
    assert post(receiver.url, params, body).status_code == 200
    data = write_dingtalk_data(tmp_path / "dingtalk")
    process, peer_url = start_dingtalk_peer(data, tmp_path / "peer.log", app_key=APP_KEY, secret=SECRET)
    try:
        for name, value in hub_env(receiver.home, peer_url).items():
            if name.startswith(("ARCHIVE_HUB_", "DINGTALK_")):
                monkeypatch.setenv(name, value)
        monkeypatch.delenv("ARCHIVE_HUB_SOURCES_DIR", raising=False)
        monkeypatch.delenv("DINGTALK_PROCESS_CODES", raising=False)
        stream = build_stream(find_source(SOURCE_ID))
        assert isinstance(stream, DingTalkApprovalStream) and stream.inbox.folder == receiver.inbox
        newest = ApprovalInbox(receiver.inbox).entries()[-1]
        records = read_all(stream, Cursor(newest.received_at))
    finally:
        stop_dingtalk_peer(process)
    assert [r.key for r in records] == [GOOD[4]] and "_refused" not in records[0].data
    log = (tmp_path / "peer.log").read_text(errors="replace")
    assert not any(s in log for s in SECRETS)


def test_receiver_log_keeps_no_secrets(receiver: Receiver) -> None:
    """Runs after the receiver tests above: the log holds all they made the receiver do."""
    assert send_check_url(receiver.url, CRYPT).status_code == 200
    assert post(receiver.url, *forged()).status_code == 403
    time.sleep(0.2)
    log = receiver.log.read_text(errors="replace")
    assert "bytes: signature mismatch" in log and "callback kept as" in log  # really this receiver's log
    assert [s for s in SECRETS if s in log] == []


# -- archive-hub oa backfill -------------------------------------------------------------------------------
def _backfill(
    home: Path, peer_url: str, *args: str, codes: str = PROCESS_CODE
) -> subprocess.CompletedProcess[str]:
    env = hub_env(home, peer_url) | ({"DINGTALK_PROCESS_CODES": codes} if codes else {})
    return subprocess.run(
        [sys.executable, "-m", "archive_hub.cli", "oa", "backfill", SOURCE_ID, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )


def test_backfill_adds_finished_agreed_instances_once(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    url = fresh_peer()
    home = tmp_path / "hub"
    first = _backfill(home, url, "--since", "2025-03-01", "--until", "2025-03-31")
    assert first.returncode == 0, first.stderr
    inbox = home / "oa_inbox" / SOURCE_ID
    polled = {json.loads(p.read_text())["sp_no"] for p in inbox.iterdir()}
    # COMPLETED and agreed (the two whose files fail are refused by the sync, with the reason, not here)
    assert polled == set(GOOD) | {NO_FILE, SHORT_FILE, ATTACHED, SHORT_COMMENT}
    assert "DingTalk lists 10 finished approvals" in " ".join(first.stdout.split())
    second = _backfill(home, url, "--since", "2025-03-01", "--until", "2025-03-31")
    assert second.returncode == 0 and "0 added" in " ".join(second.stdout.split())
    assert len(list(inbox.iterdir())) == len(polled)
    outside = _backfill(home, url, "--since", "2025-04-01", "--until", "2025-04-30")
    assert outside.returncode == 0 and "lists 0 finished" in " ".join(outside.stdout.split())
    without = _backfill(home, url, "--since", "2025-03-01", codes="")
    assert without.returncode == 2 and "connection.templates" in without.stderr
    outputs = "".join(r.stdout + r.stderr for r in (first, second, outside, without))
    assert not any(s in outputs for s in SECRETS)

    stream = make_stream(url, tmp_path)  # the sync reads the polled entries like pushes
    stream.inbox = ApprovalInbox(inbox)
    records = {r.key: r for r in read_all(stream)}
    assert set(records) == polled
    assert {k for k, r in records.items() if "_refused" in r.data} == {NO_FILE, SHORT_FILE, SHORT_COMMENT}


def test_instance_ids_are_paged_and_windowed(fresh_peer: PeerStarter, tmp_path: Path) -> None:
    data = tmp_path / "many"
    (data / "instances").mkdir(parents=True)
    start = dt.datetime(2025, 1, 1, 9, 0, tzinfo=TZ)
    made = []
    for n in range(50):  # one every 5 days: windows of 120 days hold 24, 24 and 2, pages of 20
        pid = _instance_id(1000 + n)
        result = instance(1000 + n, pid, receipt=False) | {
            "createTime": _utc(start + dt.timedelta(days=n * 5))
        }
        (data / "instances" / f"{pid}.json").write_text(
            json.dumps(result, ensure_ascii=False), encoding="utf-8"
        )
        made.append(pid)
    url = fresh_peer(data=data)
    stream = make_stream(url, tmp_path)
    found = stream.api.instance_ids(start, start + dt.timedelta(days=300), PROCESS_CODE, ["COMPLETED"])
    assert found == made
    assert stats(url)["calls"]["instanceIds/query"] == 2 + 2 + 1


def test_peer_log_keeps_no_secrets(peer: str, data_dir: Path) -> None:
    """The module peer served every test above that used it: its log holds no secret and no token."""
    token = token_of(peer)
    log = (data_dir.parent / "peer.log").read_text(errors="replace")
    assert "listening on" in log
    assert SECRET not in log and token not in log
