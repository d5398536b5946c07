"""The Feishu approval connector (connectors/oa/feishu.py) against the Feishu peer process, the callback
receiver process and `archive-hub oa backfill`.

Why: an APPROVED Feishu 审批实例 must be archived as exactly what Feishu answered (detail bytes, files as
downloaded over a pre-signed link without the token), what is refused must be kept with a reason, transient
failures must be waited out or fail the run, and no secret may reach a log, an answer or an error. The
receiver faces the internet: it answers url_verification with the challenge, keeps pushes byte for byte with
their X-Lark-* headers, and refuses forgeries with 403.
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
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from archive_hub.sources import SourceConfig, build_stream, find_source
from canonical_model.record import AccountingForm
from canonical_model.retention import RetentionPeriod
from connectors.errors import ConfigError
from connectors.http import HttpClient
from connectors.oa.approval_inbox import ApprovalInbox
from connectors.oa.callback_crypto import feishu_signature
from connectors.oa.feishu import FeishuApprovalStream, FeishuCallbackKeys, stream_from_config
from connectors.oa.feishu_api import FeishuApi
from connectors.oa.feishu_peer import approval_event, seal, send_event, url_verification
from connectors.stream import Cursor, SourceRecord
from connectors.testing import read_all, stream_test_class
from mappings.engine import load_mapping
from tests.oa.feishu_server import REPO_ROOT, start_feishu_peer, stop_feishu_peer
from tests.s3_server import free_port

SOURCE_ID = "feishu_approvals"
APP_ID = "cli_a5f3e2d1c0b9a8f7"  # the shape of a Feishu App ID; fictitious
SECRET = "fs-secret-" + secrets.token_urlsafe(24)  # values the tests look for where they must not be
ENCRYPT_KEY = "fsKey" + secrets.token_urlsafe(16)
VERIFICATION_TOKEN = "fsTok" + secrets.token_urlsafe(16)
SECRETS = (SECRET, ENCRYPT_KEY, VERIFICATION_TOKEN)
KEYS = FeishuCallbackKeys(ENCRYPT_KEY, VERIFICATION_TOKEN)
APPROVAL_CODE = "7C468A54-8745-2245-9675-08B7C63E7A85"
TZ = ZoneInfo("Asia/Shanghai")
CONTEXT = {
    "source_id": SOURCE_ID,
    "system": "feishu",
    "fonds_no": "J001",
    "fonds_name": "华东精密制造有限公司",
}
USERS = {"zhangwei": "张伟", "lina": "李娜", "wangfang": "王芳", "zhoujie": "周杰", "sunlihua": "孙丽华"}
APPLICANTS = ["zhangwei", "lina", "wangfang"]
HEAD, FINANCE = "zhoujie", "sunlihua"


def _code(n: int) -> str:
    return f"81D31358-93AF-92D6-7425-{n:012d}"


GOOD = [_code(n) for n in range(1, 7)]  # APPROVED, one or two files each
REJECTED = _code(7)
DELETED = _code(8)  # the push said APPROVED, the detail now says DELETED
NO_FILE = _code(9)  # approved, but its 发票 link answers 404
PENDING = _code(11)
UNKNOWN = _code(99)


def serial(n: int) -> str:
    return f"202503100{n:03d}"


def file_id(n: int, kind: str) -> str:
    return f"box{n:03d}{'inv' if kind == 'invoice' else 'rcp'}"


def _file_bytes(fid: str, size: int) -> bytes:
    seed = hashlib.sha256(fid.encode()).digest()
    return ((seed + bytes(range(256))) * (size // 288 + 1))[:size]


def _ms(moment: dt.datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def instance(n: int, code: str, *, status: str = "APPROVED", receipt: bool = True) -> dict[str, Any]:
    """获取单个审批实例详情's `data` for a 报销: applicant, head and finance, one 发票 (+ one 附件), a table."""
    applied = dt.datetime(2025, 3, 10, 9, 30, tzinfo=TZ) + dt.timedelta(hours=n)
    applicant = APPLICANTS[n % len(APPLICANTS)]
    head_at, finance_at = applied + dt.timedelta(hours=3), applied + dt.timedelta(hours=6)
    done = status != "PENDING"
    files = [(file_id(n, "invoice"), f"数电票_{serial(n)}.ofd")]
    if receipt:
        files.append((file_id(n, "receipt"), f"报销附件 行程单({n:02d}).pdf"))
    form: list[dict[str, Any]] = [
        {"id": "w1", "name": "费用类型", "type": "radioV2", "value": "差旅费"},
        {"id": "w2", "name": "报销事由", "type": "textarea", "value": f"上海出差住宿 {serial(n)}"},
        {"id": "w3", "name": "发生日期", "type": "date", "value": "2025-03-08T00:00:00+08:00"},
        {
            "id": "w4",
            "name": "报销金额",
            "type": "amount",
            "value": 1000 + n * 111 + 0.5,
            "ext": {"currency": "CNY"},
        },
        {
            "id": "w5",
            "name": "费用明细",
            "type": "fieldList",
            "value": [
                [
                    {"id": "r1", "name": "项目", "type": "input", "value": "住宿"},
                    {"id": "r2", "name": "金额", "type": "amount", "value": 800, "ext": {"currency": "CNY"}},
                ]
            ],
        },
        {
            "id": "w6",
            "name": "发票",
            "type": "attachmentV2",
            "value": [f"file:{files[0][0]}"],
            "ext": files[0][1],
        },
    ]
    if receipt:
        form.append(
            {
                "id": "w7",
                "name": "附件",
                "type": "attachmentV2",
                "value": [f"file:{files[1][0]}"],
                "ext": files[1][1],
            }
        )
    form.append({"id": "w8", "name": "备注", "type": "input", "value": None})
    timeline = [
        {"type": "START", "create_time": _ms(applied), "user_id": applicant},
        {"type": "PASS", "create_time": _ms(head_at), "user_id": HEAD, "comment": "同意", "task_id": "t1"},
        {"type": "CC", "create_time": _ms(head_at), "user_id": FINANCE, "user_id_list": ["lina"]},
    ]
    if done:
        kind = "REJECT" if status == "REJECTED" else "PASS"
        timeline.append(
            {
                "type": kind,
                "create_time": _ms(finance_at),
                "user_id": FINANCE,
                "comment": "已核对发票",
                "task_id": "t2",
            }
        )
    return {
        "approval_code": APPROVAL_CODE,
        "approval_name": "报销",
        "instance_code": code,
        "serial_number": serial(n),
        "user_id": applicant,
        "open_id": f"ou_{applicant}",
        "department_id": "od-finance",
        "start_time": _ms(applied),
        "end_time": _ms(finance_at) if done else "0",
        "status": status,
        "form": json.dumps(form, ensure_ascii=False),
        "task_list": [
            {"id": "t1", "user_id": HEAD, "status": "APPROVED", "node_name": "部门主管"},
            {"id": "t2", "user_id": FINANCE, "status": status if done else "PENDING", "node_name": "财务"},
        ],
        "timeline": timeline,
    }


def write_feishu_data(folder: Path) -> Path:
    (folder / "instances").mkdir(parents=True)
    (folder / "files").mkdir()
    made = [(n, c, instance(n, c, receipt=n % 2 == 1)) for n, c in enumerate(GOOD, 1)]
    made += [
        (7, REJECTED, instance(7, REJECTED, status="REJECTED", receipt=False)),
        (8, DELETED, instance(8, DELETED, status="DELETED", receipt=False)),
        (9, NO_FILE, instance(9, NO_FILE, receipt=False)),
        (11, PENDING, instance(11, PENDING, status="PENDING", receipt=False)),
    ]
    for n, code, data in made:
        (folder / "instances" / f"{code}.json").write_text(
            json.dumps(data, ensure_ascii=False), encoding="utf-8"
        )
        if code == NO_FILE:
            continue
        for kind, size in (("invoice", 40_000), ("receipt", 9_000)):
            fid = file_id(n, kind)
            (folder / "files" / fid).write_bytes(_file_bytes(fid, size))
            media = "application/ofd" if kind == "invoice" else "application/octet-stream"
            (folder / "files" / f"{fid}.json").write_text(
                json.dumps({"content_type": media}), encoding="utf-8"
            )
    users = {uid: {"name": name} for uid, name in USERS.items()}
    (folder / "users.json").write_text(json.dumps(users, ensure_ascii=False), encoding="utf-8")
    return folder


# -- peers, streams, events ------------------------------------------------------------------------------
_SHARED: dict[str, str] = {}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_feishu_data(tmp_path_factory.mktemp("feishu") / "data")


@pytest.fixture(scope="module", autouse=True)
def peer(data_dir: Path) -> Iterator[str]:
    process, url = start_feishu_peer(data_dir, data_dir.parent / "peer.log", app_id=APP_ID, secret=SECRET)
    _SHARED["url"] = url
    try:
        yield url
    finally:
        _SHARED.clear()
        stop_feishu_peer(process)


@pytest.fixture
def fresh_peer(data_dir: Path, tmp_path: Path) -> Iterator[str]:
    """A peer of the test's own: its faults and counters are this test's alone."""
    process, url = start_feishu_peer(data_dir, tmp_path / "peer.log", app_id=APP_ID, secret=SECRET)
    try:
        yield url
    finally:
        stop_feishu_peer(process)


def make_stream(
    base_url: str, folder: Path, *, secret: str = SECRET, templates: tuple[str, ...] = ()
) -> FeishuApprovalStream:
    http = HttpClient(SOURCE_ID, base_url, timeout=10, backoff=0.05)
    return FeishuApprovalStream(
        SOURCE_ID,
        FeishuApi(SOURCE_ID, base_url, APP_ID, secret, http=http),
        KEYS,
        ApprovalInbox(folder / "inbox"),
        work_dir=folder / "work",
        quarantine_dir=folder / "quarantine",
        templates=templates,
    )


def sealed(event: dict[str, Any], key: str = ENCRYPT_KEY) -> tuple[dict[str, str], bytes]:
    """(kept params: the X-Lark-* headers lower-case, body) of a push as the receiver keeps it."""
    headers, body = seal(key, event)
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-lark")}, body


def event(code: str, status: str = "APPROVED", token: str = VERIFICATION_TOKEN) -> dict[str, Any]:
    return approval_event(instance_code=code, status=status, approval_code=APPROVAL_CODE, token=token)


def announce(stream: FeishuApprovalStream, code: str, *statuses: str) -> list[Path]:
    return [stream.inbox.put_callback(*sealed(event(code, s))) for s in statuses]


def standard_stream(tmp_path: Path) -> FeishuApprovalStream:
    stream = make_stream(_SHARED["url"], tmp_path)
    for code in GOOD:
        announce(stream, code, "PENDING")
    for code in [GOOD[3], GOOD[0], GOOD[5], GOOD[1], GOOD[4], GOOD[2]]:
        announce(stream, code, "APPROVED")
    return stream


TestFeishuApprovalStream = stream_test_class(standard_stream)


def token_of(base_url: str) -> str:
    answer = requests.post(
        f"{base_url}/open-apis/auth/v3/tenant_access_token/internal",
        json={"app_id": APP_ID, "app_secret": SECRET},
        timeout=10,
    )
    return str(answer.json()["tenant_access_token"])


def detail_answer(base_url: str, code: str) -> bytes:
    response = requests.get(
        f"{base_url}/open-apis/approval/v4/instances/{code}",
        headers={"Authorization": f"Bearer {token_of(base_url)}"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.content


def stats(base_url: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/_peer/stats", timeout=10).json()


def faults(base_url: str, **wanted: Any) -> None:
    assert requests.post(f"{base_url}/_peer/faults", json=wanted, timeout=10).status_code == 200


def kept_at(record: SourceRecord) -> Path:
    match = re.search(r"\(original kept at (.+)\)$", record.data["_refused"])
    assert match, record.data["_refused"]
    return Path(match.group(1))


def attachment_bytes(record: SourceRecord) -> dict[str, bytes]:
    return {a["name"]: Path(a["uri"]).read_bytes() for a in record.data["attachments"]}


# -- which pushes become records ------------------------------------------------------------------------
def test_pending_then_approved_is_one_record(tmp_path: Path) -> None:
    stream = make_stream(_SHARED["url"], tmp_path)
    announce(stream, GOOD[0], "PENDING", "APPROVED")
    (record,) = read_all(stream)
    assert record.key == GOOD[0] and "_refused" not in record.data and GOOD[0] not in stream.passed_over


def test_rejected_canceled_and_deleted_are_passed_over(tmp_path: Path) -> None:
    stream = make_stream(_SHARED["url"], tmp_path)
    announce(stream, REJECTED, "REJECTED")
    announce(stream, GOOD[1], "CANCELED")
    announce(stream, GOOD[2], "DELETED")
    announce(stream, PENDING, "PENDING")
    assert read_all(stream) == []
    assert stream.passed_over == {REJECTED: "已拒绝", GOOD[1]: "已撤回", GOOD[2]: "已删除", PENDING: "审批中"}
    assert stream.revoked == {GOOD[2]: "已删除"}


def test_instance_deleted_after_the_push_is_noted_not_archived(tmp_path: Path) -> None:
    stream = make_stream(_SHARED["url"], tmp_path)
    announce(stream, DELETED, "APPROVED")
    announce(stream, GOOD[1], "APPROVED")
    assert [r.key for r in read_all(stream)] == [GOOD[1]]
    assert stream.passed_over[DELETED] == "now 已删除" and DELETED in stream.revoked


# -- the record and its package -----------------------------------------------------------------------------
def test_record_holds_the_form_the_trail_and_the_exact_bytes(
    peer: str, data_dir: Path, tmp_path: Path
) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, GOOD[0], "APPROVED")
    (record,) = read_all(stream)
    data = record.data
    applied = dt.datetime(2025, 3, 10, 10, 30, tzinfo=TZ)
    assert data["sp_no"] == GOOD[0] and data["document_no"] == serial(1)
    assert (data["status"], data["sp_name"], data["template_id"]) == ("已通过", "报销", APPROVAL_CODE)
    assert (data["applicant"], data["applicant_userid"]) == ("李娜", "lina")
    assert data["amount"] == "1111.50" and data["currency"] == "CNY"  # the form's total, not the row's
    assert data["form"] == {
        "费用类型": "差旅费",
        "报销事由": f"上海出差住宿 {serial(1)}",
        "发生日期": "2025-03-08T00:00:00+08:00",
        "报销金额": "1111.50",
        "费用明细[1].项目": "住宿",
        "费用明细[1].金额": "800.00",
        "发票": "1个文件",
        "附件": "1个文件",
        "备注": "",
    }
    assert [(t["step"], t["name"], t["status"], t["speech"]) for t in data["trail"]] == [
        (1, "周杰", "已同意", "同意"),
        (2, "孙丽华", "已同意", "已核对发票"),  # START and CC are not steps
    ]
    finished = applied + dt.timedelta(hours=6)
    assert data["finished_at"] == finished.isoformat() and (data["fiscal_year"], data["period"]) == (2025, 3)
    assert [a["name"] for a in data["agents"]] == ["李娜", "周杰", "孙丽华"]
    assert [(a["name"], a["media_type"]) for a in data["attachments"]] == [
        ("审批单.json", "application/json"),
        (f"数电票_{serial(1)}.ofd", "application/ofd"),
        ("报销附件 行程单(01).pdf", "application/pdf"),  # octet-stream from the link: the name's suffix
    ]
    assert attachment_bytes(record) == {
        "审批单.json": detail_answer(peer, GOOD[0]),
        f"数电票_{serial(1)}.ofd": (data_dir / "files" / file_id(1, "invoice")).read_bytes(),
        "报销附件 行程单(01).pdf": (data_dir / "files" / file_id(1, "receipt")).read_bytes(),
    }
    assert stats(peer)["downloads_with_token"] == 0  # the pre-signed link is fetched without the token


def test_record_maps_to_an_original_voucher_kept_30_years(tmp_path: Path) -> None:
    stream = make_stream(_SHARED["url"], tmp_path)
    announce(stream, GOOD[1], "APPROVED")
    (record,) = read_all(stream)
    archived = load_mapping(REPO_ROOT / "mappings" / "feishu_approval.yaml").apply(
        record.data, record.key, CONTEXT
    )
    assert archived.category.form is AccountingForm.VOUCHER and archived.category.item == "原始凭证"
    assert archived.retention is RetentionPeriod.Y30
    assert archived.source.business_id == GOOD[1] and archived.document_no == serial(2)
    assert archived.source.system == "feishu" and archived.amount_total == Decimal("1222.50")
    assert archived.title == f"报销 王芳 1222.50元 审批编号{serial(2)}"
    assert [a.name for a in archived.attachments] == ["审批单.json", f"数电票_{serial(2)}.ofd"]


# -- refusals -------------------------------------------------------------------------------------------------
def test_inbox_message_altered_after_it_was_kept_is_refused(tmp_path: Path) -> None:
    stream = make_stream(_SHARED["url"], tmp_path)
    (path,) = announce(stream, GOOD[2], "APPROVED")
    announce(stream, GOOD[3], "APPROVED")
    entry = json.loads(path.read_bytes())
    _, other_body = sealed(event(GOOD[4]))  # a genuine body of another push, under this push's signature
    entry["body_b64"] = base64.b64encode(other_body).decode("ascii")
    path.write_bytes(json.dumps(entry).encode())
    refused, good = read_all(stream)
    assert good.key == GOOD[3] and "_refused" not in good.data
    assert refused.key == f"inbox:{path.name}" and "signature mismatch" in refused.data["_refused"]
    assert kept_at(refused).read_bytes() == path.read_bytes()


def test_instance_feishu_does_not_know_is_refused(tmp_path: Path) -> None:
    stream = make_stream(_SHARED["url"], tmp_path)
    (pushed,) = announce(stream, UNKNOWN, "APPROVED")
    (record,) = read_all(stream)
    assert (
        record.key == UNKNOWN
        and "does not know" in record.data["_refused"]
        and "1390003" in record.data["_refused"]
    )
    assert kept_at(record).read_bytes() == pushed.read_bytes()


def test_missing_file_is_refused_naming_the_field(peer: str, tmp_path: Path) -> None:
    stream = make_stream(peer, tmp_path)
    announce(stream, NO_FILE, "APPROVED")
    announce(stream, GOOD[5], "APPROVED")
    refused, good = read_all(stream)
    assert good.key == GOOD[5] and "_refused" not in good.data
    reason = refused.data["_refused"]
    assert refused.key == NO_FILE and "发票" in reason and "HTTP 404" in reason
    assert kept_at(refused).read_bytes() == detail_answer(peer, NO_FILE)


# -- faults of the peer --------------------------------------------------------------------------------------
def test_rate_limits_are_waited_out(fresh_peer: str, data_dir: Path, tmp_path: Path) -> None:
    stream = make_stream(fresh_peer, tmp_path)
    announce(stream, GOOD[0], "APPROVED")
    stream.check()
    faults(fresh_peer, rate_limit_next=2, too_many_requests_next=1)  # code 99991400 twice, HTTP 429 once
    (record,) = read_all(stream)
    assert "_refused" not in record.data and stream.api.http.retries == 3


def test_file_cut_off_mid_transfer_is_fetched_again(fresh_peer: str, data_dir: Path, tmp_path: Path) -> None:
    stream = make_stream(fresh_peer, tmp_path)
    announce(stream, GOOD[0], "APPROVED")
    faults(fresh_peer, truncate_file=file_id(1, "invoice"))
    (record,) = read_all(stream)
    assert "_refused" not in record.data and stats(fresh_peer)["calls"]["files"] == 3
    invoice = attachment_bytes(record)[f"数电票_{serial(1)}.ofd"]
    assert invoice == (data_dir / "files" / file_id(1, "invoice")).read_bytes()


def test_stale_token_is_renewed_once(fresh_peer: str, tmp_path: Path) -> None:
    stream = make_stream(fresh_peer, tmp_path)
    announce(stream, GOOD[0], "APPROVED")
    stream.check()
    faults(fresh_peer, expire_tokens=True)  # the stream's token is answered with code 99991663
    (record,) = read_all(stream)
    assert "_refused" not in record.data
    after = stats(fresh_peer)
    assert after["tokens_issued"] == 2 and after["calls"]["tenant_access_token"] == 2
    assert after["calls"]["instances/get"] == 2  # the stale answer, then the same call again


def test_wrong_secret_is_a_config_error(tmp_path: Path) -> None:
    wrong = "wrong-secret-" + secrets.token_hex(6)
    stream = make_stream(_SHARED["url"], tmp_path, secret=wrong)
    with pytest.raises(ConfigError) as caught:
        stream.check()
    message = str(caught.value)
    assert caught.value.setting == "connection.app_secret" and "10014" in message
    assert wrong not in message and SECRET not in message and SECRET not in repr(stream.api)


def _config(**connection: Any) -> SourceConfig:
    base = {
        "base_url": "https://open.feishu.cn",
        "app_id": APP_ID,
        "app_secret": SECRET,
        "encrypt_key": ENCRYPT_KEY,
        "verification_token": VERIFICATION_TOKEN,
    }
    return SourceConfig.model_validate(
        {
            "id": SOURCE_ID,
            "kind": "oa.feishu",
            "system": "feishu",
            "connection": {**base, **connection},
            "mapping": "mappings/feishu_approval.yaml",
            "fonds": {"fonds_no": "J001", "fonds_name": "华东精密制造有限公司"},
        }
    )


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"base_url": "ftp://open.feishu.cn"}, "connection.base_url"),
        ({"app_secret": ""}, "connection.app_secret"),
        ({"encrypt_key": ""}, "connection.encrypt_key"),
        ({"verification_token": ""}, "connection.verification_token"),
        ({"corp_id": "x"}, "connection.corp_id"),
    ],
)
def test_settings_are_checked_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], setting: str
) -> None:
    monkeypatch.setenv("ARCHIVE_HUB_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        stream_from_config(_config(**change))
    assert caught.value.setting == setting and not any(s in str(caught.value) for s in SECRETS)


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


def hub_env(home: Path, peer_url: str = "", codes: str = "") -> dict[str, str]:
    """This test's hub home and Feishu settings only, none of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_HUB_", "FEISHU_"))}
    env |= {
        "ARCHIVE_HUB_HOME": str(home),
        "FEISHU_APP_ID": APP_ID,
        "FEISHU_APP_SECRET": SECRET,
        "FEISHU_ENCRYPT_KEY": ENCRYPT_KEY,
        "FEISHU_VERIFICATION_TOKEN": VERIFICATION_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    if peer_url:
        env["FEISHU_API_URL"] = peer_url
    if codes:
        env["FEISHU_APPROVAL_CODES"] = codes
    return env


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    home = tmp_path_factory.mktemp("receiver") / "hub"
    home.mkdir(parents=True)
    port = free_port()
    log = home / "receiver.log"
    command = [sys.executable, "-m", "archive_hub.cli", "oa", "serve", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=hub_env(home)
        )
    started = Receiver(f"http://127.0.0.1:{port}", home, log, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{started.base_url}/callbacks/nosuch", timeout=2)
            break
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"the receiver did not start:\n{log.read_text(errors='replace')[-2000:]}"
                ) from None
            time.sleep(0.1)
    try:
        yield started
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_url_verification_echoes_the_challenge_and_keeps_nothing(receiver: Receiver) -> None:
    before, refused_before = names(receiver.inbox), names(receiver.refused)
    challenge = secrets.token_hex(12)
    answer = send_event(receiver.url, ENCRYPT_KEY, url_verification(VERIFICATION_TOKEN, challenge))
    assert answer.status_code == 200 and answer.json() == {"challenge": challenge}
    unsigned = requests.post(  # Feishu's URL check may come without the X-Lark-* headers
        receiver.url, data=seal(ENCRYPT_KEY, url_verification(VERIFICATION_TOKEN, "c2"))[1], timeout=10
    )
    assert unsigned.status_code == 200 and unsigned.json() == {"challenge": "c2"}
    assert (names(receiver.inbox), names(receiver.refused)) == (before, refused_before)


def test_approved_event_is_kept_with_its_signature_headers(receiver: Receiver) -> None:
    before = names(receiver.inbox)
    headers, body = seal(ENCRYPT_KEY, event(GOOD[0]))
    answer = requests.post(receiver.url, data=body, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json() == {}
    (new,) = names(receiver.inbox) - before
    kept = json.loads((receiver.inbox / new).read_bytes())
    assert kept["kind"] == "callback" and base64.b64decode(kept["body_b64"]) == body
    assert kept["x-lark-signature"] == headers["X-Lark-Signature"]
    assert kept["x-lark-request-nonce"] == headers["X-Lark-Request-Nonce"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: seal(ENCRYPT_KEY, event(GOOD[0])), "signature mismatch"),
        (lambda: seal(ENCRYPT_KEY, event(GOOD[0], token="another-token")), "verification token mismatch"),
    ],
    ids=["bad-signature", "wrong-token"],
)
def test_bad_push_is_refused_with_403_and_kept(receiver: Receiver, make: Any, reason: str) -> None:
    headers, body = make()
    if reason == "signature mismatch":
        headers["X-Lark-Signature"] = "0" * 64
    inbox_before, refused_before = names(receiver.inbox), names(receiver.refused)
    answer = requests.post(receiver.url, data=body, headers=headers, timeout=10)
    assert answer.status_code == 403 and reason in answer.text
    assert names(receiver.inbox) == inbox_before
    (new,) = names(receiver.refused) - refused_before
    kept = json.loads((receiver.refused / new).read_bytes())
    assert kept["reason"] == reason and base64.b64decode(kept["body_b64"]) == body
    assert kept["params"]["x-lark-signature"] == headers["X-Lark-Signature"]


def test_unsigned_requests_learn_nothing_and_deep_json_is_refused_not_crashed(receiver: Receiver) -> None:
    """Without X-Lark-Signature every failure has one reason (no decryption oracle); a body nested a megabyte
    deep is refused like any other bad body, not answered with a 500."""
    headers, body = seal(ENCRYPT_KEY, event(GOOD[0], token="another-token"))
    del headers["X-Lark-Signature"]
    garbled = json.dumps({"encrypt": base64.b64encode(os.urandom(64)).decode()}).encode()
    deep = b"[" * 500_000 + b"]" * 500_000
    answers = [requests.post(receiver.url, data=b, headers=headers, timeout=30) for b in (body, garbled)]
    assert [(a.status_code, a.text) for a in answers] == [(403, "refused: unsigned request")] * 2
    signed = seal(ENCRYPT_KEY, event(GOOD[0]))[0]  # a correct signature over the deep body itself
    stamp, nonce = signed["X-Lark-Request-Timestamp"], signed["X-Lark-Request-Nonce"]
    signed["X-Lark-Signature"] = feishu_signature(stamp, nonce, ENCRYPT_KEY, deep)
    answer = requests.post(receiver.url, data=deep, headers=signed, timeout=30)
    assert (answer.status_code, answer.text) == (403, "refused: not a JSON envelope")


def test_kept_push_is_archived_by_the_configured_source(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config/sources/feishu_approvals.yaml reads the receiver's inbox and archives from the peer."""
    headers, body = seal(ENCRYPT_KEY, event(GOOD[4]))
    assert requests.post(receiver.url, data=body, headers=headers, timeout=10).status_code == 200
    data = write_feishu_data(tmp_path / "feishu")
    process, peer_url = start_feishu_peer(data, tmp_path / "peer.log", app_id=APP_ID, secret=SECRET)
    try:
        for name, value in hub_env(receiver.home, peer_url).items():
            if name.startswith(("ARCHIVE_HUB_", "FEISHU_")):
                monkeypatch.setenv(name, value)
        monkeypatch.delenv("ARCHIVE_HUB_SOURCES_DIR", raising=False)
        monkeypatch.delenv("FEISHU_APPROVAL_CODES", raising=False)
        stream = build_stream(find_source(SOURCE_ID))
        assert isinstance(stream, FeishuApprovalStream) and stream.inbox.folder == receiver.inbox
        newest = ApprovalInbox(receiver.inbox).entries()[-1]
        records = read_all(stream, Cursor(newest.received_at))
    finally:
        stop_feishu_peer(process)
    assert [r.key for r in records] == [GOOD[4]] and "_refused" not in records[0].data
    assert not any(s in (tmp_path / "peer.log").read_text(errors="replace") for s in SECRETS)


def test_receiver_log_keeps_no_secrets(receiver: Receiver) -> None:
    """Runs after the receiver tests above: the log holds all they made the receiver do."""
    headers, body = seal(ENCRYPT_KEY, event(GOOD[0]))
    headers["X-Lark-Signature"] = "f" * 64
    assert requests.post(receiver.url, data=body, headers=headers, timeout=10).status_code == 403
    time.sleep(0.2)
    log = receiver.log.read_text(errors="replace")
    assert "signature mismatch" in log and "callback kept as" in log
    assert [s for s in SECRETS if s in log] == []


# -- archive-hub oa backfill -------------------------------------------------------------------------------
def _backfill(
    home: Path, peer_url: str, *args: str, codes: str = APPROVAL_CODE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archive_hub.cli", "oa", "backfill", SOURCE_ID, *args],
        capture_output=True,
        text=True,
        env=hub_env(home, peer_url, codes),
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )


def test_backfill_adds_approved_instances_once(fresh_peer: str, tmp_path: Path) -> None:
    home = tmp_path / "hub"
    first = _backfill(home, fresh_peer, "--since", "2025-03-01", "--until", "2025-03-31")
    assert first.returncode == 0, first.stderr
    inbox = home / "oa_inbox" / SOURCE_ID
    polled = {json.loads(p.read_text())["sp_no"] for p in inbox.iterdir()}
    assert polled == set(GOOD) | {NO_FILE}  # APPROVED only; the one whose file fails is refused by the sync
    assert "Feishu lists 7 finished approvals" in " ".join(first.stdout.split())
    second = _backfill(home, fresh_peer, "--since", "2025-03-01", "--until", "2025-03-31")
    assert second.returncode == 0 and "0 added" in " ".join(second.stdout.split())
    without = _backfill(home, fresh_peer, "--since", "2025-03-01", codes="")
    assert without.returncode == 2 and "connection.templates" in without.stderr
    outputs = "".join(r.stdout + r.stderr for r in (first, second, without))
    assert not any(s in outputs for s in SECRETS)
    stream = make_stream(fresh_peer, tmp_path)
    stream.inbox = ApprovalInbox(inbox)
    records = {r.key: r for r in read_all(stream)}
    assert set(records) == polled and {k for k, r in records.items() if "_refused" in r.data} == {NO_FILE}


def test_peer_log_keeps_no_secrets(peer: str, data_dir: Path) -> None:
    token = token_of(peer)
    log = (data_dir.parent / "peer.log").read_text(errors="replace")
    assert "listening on" in log and SECRET not in log and token not in log
