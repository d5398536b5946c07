"""金蝶云星空 through the declarative REST source, against a real local peer process speaking Kingdee's
WebAPI contract (LoginByAppSecret, ExecuteBillQuery 2-D rows, AttachmentDownLoad in base64 parts) over the
seeded sample ERP's books.

The peer is a process of ours because a Kingdee account set cannot run here; everything on the hub's side
(config, session, paging, grouping, files, the pipeline) is the real code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, QuarantineRow
from archive_hub.pipeline.runner import run_sync
from archive_hub.settings import PROJECT_ROOT
from connectors.erp.database import DatabaseVoucherStream
from connectors.erp.rest import RestVoucherStream
from connectors.erp.sample_erp.seed import seed_sample_erp
from connectors.errors import ConfigError, SourceError
from connectors.testing import read_all, stream_test_class
from tests.conftest import Hub, seed
from tests.erp.rest_helpers import books_behind_peer, peer_post, peer_stats, rest_stream
from tests.oa.peer_process import start_peer, stop_peer

CONFIG = PROJECT_ROOT / "config" / "sources" / "erp_kingdee.yaml"
SECRET = "kd-app-secret-7f3a91c2e4"
ACCOUNT = {
    "KINGDEE_ACCT_ID": "65f0680c543e6b",
    "KINGDEE_USER": "archive_api",
    "KINGDEE_APP_ID": "312345_x8aDW",
}


def _peer_args(data: Path) -> list[str]:
    args = ["--data", str(data), "--acct-id", ACCOUNT["KINGDEE_ACCT_ID"], "--user", ACCOUNT["KINGDEE_USER"]]
    return [*args, "--app-id", ACCOUNT["KINGDEE_APP_ID"]]


def run_peer(data: Path, log: Path, part_size: int = 4096) -> tuple[object, str]:
    args = [*_peer_args(data), "--part-size", str(part_size)]
    return start_peer(
        "connectors.erp.kingdee_peer", args, log, secret_env="KINGDEE_PEER_SECRET", secret=SECRET
    )


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The sample books behind one peer for the module: (data folder, peer URL)."""
    yield from books_behind_peer(tmp_path_factory.mktemp("kingdee"), run_peer)


def kingdee_stream(url: str, work: Path, secret: str = SECRET, **overrides: object) -> RestVoucherStream:
    return rest_stream(
        CONFIG, {**ACCOUNT, "KINGDEE_URL": url, "KINGDEE_APP_SECRET": secret}, work, **overrides
    )


TestKingdeeVoucherStream = stream_test_class(lambda tmp_path: _module_stream(tmp_path))
_PEER: dict[str, str] = {}


def _module_stream(tmp_path: Path) -> RestVoucherStream:
    return kingdee_stream(_PEER["url"], tmp_path)


@pytest.fixture(autouse=True)
def _peer_for_standard_suite(books: tuple[Path, str]) -> None:
    _PEER["url"] = books[1]


@pytest.mark.parametrize("paging", ["offset", "keyset"])
def test_vouchers_equal_the_books_row_for_row_across_page_boundaries(
    books: tuple[Path, str], tmp_path: Path, paging: str
) -> None:
    data, url = books
    stream = kingdee_stream(url, tmp_path, paginator={"type": paging, "page_size": 7})  # cuts vouchers
    got = {r.key: r for r in read_all(stream, batch_size=50)}
    truth = DatabaseVoucherStream("books", f"sqlite:///{data / 'erp.sqlite'}", data / "attachments")
    books_records = {r.key: r for r in read_all(truth, batch_size=500) if r.data["status"] != "draft"}
    assert got.keys() == books_records.keys() and len(got) > 60
    for key, record in got.items():
        expected = books_records[key]
        lines = record.data["lines"]
        assert [ln["line_no"] for ln in lines] == [ln["line_no"] for ln in expected.data["lines"]]
        assert sum(Decimal(str(ln["debit"])) for ln in lines) == sum(
            ln["debit"] for ln in expected.data["lines"]
        )
        assert [ln["account_code"] for ln in lines] == [ln["account_code"] for ln in expected.data["lines"]]
        assert record.data["first_line"] == lines[0] and record.changed_at == expected.changed_at
        fetched = [a for a in record.attachments if not a["uri"].startswith("refused:")]
        mine = sorted(hashlib.sha256(Path(a["uri"]).read_bytes()).hexdigest() for a in fetched)
        on_disk = [a for a in expected.attachments if Path(a["uri"]).is_file()]
        theirs = sorted(hashlib.sha256(Path(a["uri"]).read_bytes()).hexdigest() for a in on_disk)
        assert mine == theirs, key
        # A file the ERP lists but cannot serve is refused by name, for this voucher only.
        missing = len(record.attachments) - len(fetched)
        assert missing == len(expected.attachments) - len(on_disk), key
    assert peer_stats(url)["calls"]["AttachmentDownLoad"] > len(
        [a for r in got.values() for a in r.attachments]
    )


def test_wrong_app_secret_is_a_config_error_that_never_shows_the_secret(
    books: tuple[Path, str], tmp_path: Path
) -> None:
    wrong = "kd-wrong-secret-0000"
    stream = kingdee_stream(books[1], tmp_path, secret=wrong)
    before = peer_stats(books[1])["refused_logins"]
    with pytest.raises(ConfigError, match=r"connection\.auth\.app_secret.*refused the login") as caught:
        stream.check()
    assert wrong not in str(caught.value) and SECRET not in str(caught.value)
    assert wrong not in repr(stream) and wrong not in repr(stream.vendor)
    assert peer_stats(books[1])["refused_logins"] == before + 1
    assert SECRET not in (books[0] / "peer.log").read_text()


def test_empty_settings_fail_at_once_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"connection\.base_url"):
        kingdee_stream("", tmp_path)
    with pytest.raises(ConfigError, match=r"connection\.auth\.app_secret"):
        kingdee_stream("http://127.0.0.1:9", tmp_path, secret="")
    with pytest.raises(ConfigError, match=r"connection\.vendor.*no connectors/erp/sap_r3\.py"):
        kingdee_stream("http://127.0.0.1:9", tmp_path, vendor="sap_r3")
    with pytest.raises(ConfigError, match=r"connection\.paginator\.type"):
        kingdee_stream("http://127.0.0.1:9", tmp_path, paginator={"type": "cursor"})


def test_a_lost_session_is_renewed_once_and_reading_goes_on(books: tuple[Path, str], tmp_path: Path) -> None:
    url = books[1]
    stream = kingdee_stream(url, tmp_path, paginator={"type": "offset", "page_size": 40})
    batches = stream.read(None, lookback=dt.timedelta(0), batch_size=10)
    first = next(batches)
    peer_post(url, "/_peer/faults", {"expire_sessions": True})  # 会话信息已丢失 on the next call
    rest = [r for b in batches for r in b]
    assert stream.vendor.logins == 2  # type: ignore[attr-defined]
    everything = read_all(kingdee_stream(url, tmp_path / "again"), batch_size=500)
    assert [r.key for r in first + rest] == [r.key for r in everything]


def test_a_session_given_only_in_the_answer_travels_in_the_cookie_jar(
    books: tuple[Path, str], tmp_path: Path
) -> None:
    url = books[1]
    peer_post(url, "/_peer/faults", {"login_cookie": False})
    try:
        stream = kingdee_stream(url, tmp_path, attachments=False)
        assert len(read_all(stream, batch_size=500)) > 60 and stream.vendor.logins == 1  # type: ignore[attr-defined]
    finally:
        peer_post(url, "/_peer/faults", {"login_cookie": True})


def test_pages_capped_by_the_server_and_an_instant_edited_while_paged_lose_nothing(tmp_path: Path) -> None:
    """The server cuts every answer at 6 rows (Kingdee's Limit cap, here small) and the sample's batch
    postings put more rows than that at one FMODIFYDATE; while the hub pages such an instant by offset, a
    voucher of it is saved again and leaves it. Every voucher still comes whole, the edited one again last."""
    data = tmp_path / "books"
    seed_sample_erp(f"sqlite:///{data / 'erp.sqlite'}", data / "attachments", vouchers=60)
    truth = read_all(DatabaseVoucherStream("books", f"sqlite:///{data / 'erp.sqlite'}", None), batch_size=500)
    audited = [r for r in truth if r.data["status"] != "draft"]
    rows_at: dict[object, int] = {}
    for r in audited:
        rows_at[r.changed_at] = rows_at.get(r.changed_at, 0) + len(r.data["lines"])
    busiest = max(rows_at, key=rows_at.__getitem__)
    assert rows_at[busiest] > 6, "the seed no longer puts more than a page of rows at one instant"
    edited = next(r.key for r in audited if r.changed_at == busiest)
    process, url = start_peer(
        "connectors.erp.kingdee_peer",
        [*_peer_args(data), "--max-rows", "6"],
        tmp_path / "peer.log",
        secret_env="KINGDEE_PEER_SECRET",
        secret=SECRET,
    )
    try:
        peer_post(url, "/_peer/faults", {"touch_on_offset": int(edited)})
        stream = kingdee_stream(
            url, tmp_path / "work", attachments=False, paginator={"type": "keyset", "page_size": 6}
        )
        got = read_all(stream, batch_size=500)
        calls = peer_stats(url)["calls"]["ExecuteBillQuery"]
    finally:
        stop_peer(process)  # type: ignore[arg-type]
    lines = {r.key: len(r.data["lines"]) for r in truth}
    assert {r.key for r in got} == {r.key for r in audited}
    assert all(len(r.data["lines"]) == lines[r.key] for r in got)
    assert got[-1].key == edited and [r.key for r in got].count(edited) in (1, 2)
    assert calls < 3 * sum(lines.values()) / 6  # it pages forward, not row by row


def test_unavailable_answers_are_retried(books: tuple[Path, str], tmp_path: Path) -> None:
    url = books[1]
    stream = kingdee_stream(url, tmp_path, attachments=False)
    stream.check()
    peer_post(url, "/_peer/faults", {"unavailable_next": 2})
    records = read_all(stream, batch_size=500)
    assert stream.http.retries == 2 and len(records) > 60


def test_an_answer_out_of_order_stops_the_run_before_a_cursor_can_skip(
    books: tuple[Path, str], tmp_path: Path
) -> None:
    url = books[1]
    stream = kingdee_stream(url, tmp_path, attachments=False)
    peer_post(url, "/_peer/faults", {"disorder": True})
    try:
        with pytest.raises(SourceError, match="out of \\(change time, key\\) order"):
            read_all(stream, batch_size=500)
    finally:
        peer_post(url, "/_peer/faults", {"disorder": False})


def test_a_key_that_could_rewrite_the_filter_is_refused(books: tuple[Path, str], tmp_path: Path) -> None:
    stream = kingdee_stream(books[1], tmp_path)
    with pytest.raises(SourceError, match="not a voucher key"):
        stream.read_keys(["1) OR (1=1"])
    assert [r.key for r in stream.read_keys(["3"])] == ["3"]


def test_kingdee_dag_archives_the_books_under_airflow_once(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated DAG archive_erp_kingdee, run by Airflow over the peer: every 已审核 voucher archived
    with its files, the planted defects and a short download quarantined by name, no secret in Airflow's
    log, XCom, the run files or the catalog; a second run archives nothing."""
    from archive_hub.airflow_runner import run_airflow_dag

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    seed(hub, vouchers=150)
    data = hub.home / "sample_erp"
    process, url = run_peer(data, hub.home / "peer.log", part_size=2048)
    try:
        with sqlite3.connect(data / "erp.sqlite") as erp:
            short_id, short_voucher = erp.execute(
                "SELECT a.id, a.voucher_id FROM erp_attachment a JOIN erp_voucher v ON v.id = a.voucher_id "
                "WHERE v.status != 'draft' ORDER BY a.id LIMIT 1"
            ).fetchone()
            audited = erp.execute("SELECT count(*) FROM erp_voucher WHERE status != 'draft'").fetchone()[0]
        peer_post(url, "/_peer/faults", {"short_file": f"att-{short_id:06d}"})
        for name, value in {**ACCOUNT, "KINGDEE_URL": url, "KINGDEE_APP_SECRET": SECRET}.items():
            monkeypatch.setenv(name, value)
        log = hub.home / "dag.log"
        rc = run_airflow_dag("archive_erp_kingdee", hub.settings, log, timeout=240)
        second = run_sync("erp_kingdee", "kd-2")
        # Triggered with {"full": true}: the source read whole, from no cursor, and nothing archived again.
        full_log = hub.home / "dag-full.log"
        rc_full = run_airflow_dag(
            "archive_erp_kingdee", hub.settings, full_log, timeout=240, conf={"full": True}
        )
        sessions = peer_stats(url)["sessions_issued"]
    finally:
        stop_peer(process)  # type: ignore[arg-type]
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert rc_full == 0, full_log.read_text()[-3000:]
    with sqlite3.connect(hub.home / "airflow" / "airflow.db") as db:
        states = set(
            db.execute("select task_id, state from task_instance where dag_id='archive_erp_kingdee'")
        )
        rows = db.execute(
            "select run_id, task_id, value from xcom where dag_id='archive_erp_kingdee'"
        ).fetchall()
    assert states == {(t, "success") for t in ("extract", "map", "validate", "archive", "finalize")}
    runs: dict[str, dict[str, dict]] = {}
    for run_id, task_id, value in rows:
        summary = json.loads(value)
        runs.setdefault(run_id, {})[task_id] = json.loads(summary) if isinstance(summary, str) else summary
    (first_run,) = [r for r in runs.values() if not r["extract"]["from_start"]]
    (full_run,) = [r for r in runs.values() if r["extract"]["from_start"]]  # the run triggered with full
    first = first_run["finalize"]
    assert first["archived"] + first["quarantined"] == audited
    assert second["archived"] == 0 and second["new_versions"] == 0 and second["status"] == "success"
    assert full_run["extract"]["records"] == audited and full_run["extract"]["cursor_from"] is None
    assert full_run["finalize"]["archived"] == 0 and full_run["finalize"]["new_versions"] == 0
    xcoms = rows
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        reasons = {
            q.business_id: q.reason
            for q in s.scalars(select(QuarantineRow).where(QuarantineRow.source_id == "erp_kingdee"))
        }
        archived = s.scalars(
            select(ArchiveRecordRow.business_id).where(ArchiveRecordRow.source_id == "erp_kingdee")
        ).all()
    catalog.dispose()
    assert len(archived) == first["archived"] > 100
    assert "bytes but the source says" in reasons[str(short_voucher)]
    assert any("13-45" in r for r in reasons.values())  # the unparseable date, named
    places: list[tuple[str, bytes]] = [("airflow log", text.encode()), ("xcom", repr(xcoms).encode())]
    places.append(("airflow log (full)", full_log.read_bytes()))
    places.append(("catalog", (hub.home / "catalog.sqlite").read_bytes()))
    places.append(("peer log", (hub.home / "peer.log").read_bytes()))
    places += [(str(p), p.read_bytes()) for p in (hub.home / "runs").rglob("*") if p.is_file()]
    assert sessions
    for where, found in places:
        assert SECRET.encode() not in found, f"the AppSecret is in {where}"
        assert not any(sid.encode() in found for sid in sessions if where != "peer log"), (
            f"a session id is in {where}"
        )


def test_a_voucher_edited_while_the_run_pages_loses_nothing_with_keyset_paging(
    tmp_path: Path,
) -> None:
    """A user saves an early voucher again while the hub reads page 3: it moves to the end of the
    FMODIFYDATE order. With offsets the rows behind it shift back and one page boundary skips them, for good
    once the cursor passes them; keyset paging asks each page from the last change time read."""
    data = tmp_path / "books"
    seed_sample_erp(f"sqlite:///{data / 'erp.sqlite'}", data / "attachments", vouchers=60)
    process, url = run_peer(data, tmp_path / "peer.log")
    try:
        truth = DatabaseVoucherStream("books", f"sqlite:///{data / 'erp.sqlite'}", None)
        books_lines = {r.key: len(r.data["lines"]) for r in read_all(truth, batch_size=500)}
        audited = [r.key for r in read_all(truth, batch_size=500) if r.data["status"] != "draft"]
        found = {}
        for paging, edited in (("offset", audited[1]), ("keyset", audited[2])):
            stream = kingdee_stream(url, tmp_path / paging, paginator={"type": paging, "page_size": 9})
            stream.spec.attachments = False
            peer_post(url, "/_peer/faults", {"touch": {"after": 3, "voucher": int(edited)}})
            found[paging] = read_all(stream, batch_size=500)
    finally:
        stop_peer(process)  # type: ignore[arg-type]

    def damaged(records: list) -> set[str]:  # vouchers missing, or read with lines missing
        read = {r.key: len(r.data["lines"]) for r in records}
        return {k for k in audited if read.get(k) != books_lines[k]}

    assert damaged(found["offset"]), "offset paging was expected to skip rows here: the hazard is not shown"
    assert not damaged(found["keyset"])
    keyset = [r.key for r in found["keyset"]]
    assert set(audited) <= set(keyset) and keyset[-1] == edited  # read again last, with its new time
    assert len(keyset) == len(set(keyset)) + 1  # the edited voucher twice (old and new time), nothing else
