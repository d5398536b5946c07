"""用友 YonBIP through the declarative REST source (nested vouchers, page numbers, a token in the query,
a window ordered by the hub), against a real local peer process that checks the selfAppAuth signature by
the documented rule and serves the seeded sample ERP's books. A YonBIP tenant cannot run here.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow
from archive_hub.pipeline.runner import run_sync
from archive_hub.settings import PROJECT_ROOT
from connectors.erp.database import DatabaseVoucherStream
from connectors.erp.rest import RestVoucherStream
from connectors.erp.sample_erp.seed import seed_sample_erp
from connectors.erp.yonbip import self_app_signature
from connectors.errors import ConfigError, SourceError
from connectors.testing import read_all, stream_test_class
from tests.conftest import Hub, book_copy_of_voucher, seed
from tests.erp.rest_helpers import books_behind_peer, peer_post, peer_stats, rest_stream
from tests.oa.peer_process import start_peer, stop_peer

CONFIG = PROJECT_ROOT / "config" / "sources" / "erp_yonbip.yaml"
SECRET = "yb-app-secret-5c1e0d77a9b4"
APP_KEY = "41832a3d2df94989b500da6a22268747"


def run_peer(data: Path, log: Path) -> tuple[object, str]:
    args = ["--data", str(data), "--app-key", APP_KEY]
    return start_peer("connectors.erp.yonbip_peer", args, log, secret_env="YONBIP_PEER_SECRET", secret=SECRET)


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The sample books behind one peer for the module: (data folder, peer URL)."""
    yield from books_behind_peer(tmp_path_factory.mktemp("yonbip"), run_peer)


def yonbip_stream(url: str, work: Path, secret: str = SECRET, **overrides: object) -> RestVoucherStream:
    return rest_stream(
        CONFIG, {"YONBIP_URL": url, "YONBIP_APP_KEY": APP_KEY, "YONBIP_APP_SECRET": secret}, work, **overrides
    )


_PEER: dict[str, str] = {}
TestYonbipVoucherStream = stream_test_class(lambda tmp_path: yonbip_stream(_PEER["url"], tmp_path))


@pytest.fixture(autouse=True)
def _peer_for_standard_suite(books: tuple[Path, str]) -> None:
    _PEER["url"] = books[1]


def test_signature_is_the_documented_string_signed() -> None:
    """The page's example: appKey 41832a…, timestamp 1568098531823 sign "appKey41832a…timestamp1568098531823"."""
    import base64
    import hashlib
    import hmac

    text = f"appKey{APP_KEY}timestamp1568098531823"
    expected = base64.b64encode(hmac.new(b"s3cret", text.encode(), hashlib.sha256).digest()).decode()
    assert self_app_signature(APP_KEY, "1568098531823", "s3cret") == expected


def test_vouchers_equal_the_books_and_come_ordered_by_change_time(
    books: tuple[Path, str], tmp_path: Path
) -> None:
    data, url = books
    stream = yonbip_stream(url, tmp_path, paginator={"type": "page_number", "page_size": 7, "first_page": 1})
    got = read_all(stream, batch_size=25)
    truth = DatabaseVoucherStream("books", f"sqlite:///{data / 'erp.sqlite'}", None)
    expected = {r.key: r for r in read_all(truth, batch_size=500)}
    assert sorted(r.key for r in got) == sorted(expected) and len(got) >= 90
    assert [(r.changed_at, int(r.key)) for r in got] == sorted((r.changed_at, int(r.key)) for r in got)
    for record in got:
        lines, theirs = record.data["lines"], expected[record.key].data["lines"]
        assert sum(Decimal(str(ln["debit_org"])) for ln in lines) == sum(ln["debit"] for ln in theirs)
        employees = [ln["auxiliary"].get("职员") for ln in lines]
        assert employees == [ln["aux_employee"] for ln in theirs]
        assert record.data["fiscal_year"] == expected[record.key].data["fiscal_year"]


def test_a_resumed_read_keeps_only_the_window_after_the_lookback(
    books: tuple[Path, str], tmp_path: Path
) -> None:
    stream = yonbip_stream(books[1], tmp_path)
    everything = read_all(stream, batch_size=500)
    middle = everything[len(everything) // 2]
    resumed = read_all(stream, middle.cursor, lookback=dt.timedelta(0), batch_size=500)
    # Closed at the boundary's time: everything changed at or after it, in (time, key) order.
    assert [r.key for r in resumed] == [r.key for r in everything if r.changed_at >= middle.changed_at]
    assert middle.key in {r.key for r in resumed} and len(resumed) < len(everything)


def test_wrong_secret_and_a_skewed_clock_are_config_errors_without_the_secret(
    books: tuple[Path, str], tmp_path: Path
) -> None:
    url = books[1]
    wrong = "yb-wrong-secret-111"
    stream = yonbip_stream(url, tmp_path, secret=wrong)
    with pytest.raises(ConfigError, match=r"connection\.auth\.app_secret.*签名校验失败") as caught:
        stream.check()
    assert (
        wrong not in str(caught.value)
        and SECRET not in str(caught.value)
        and wrong not in repr(stream.vendor)
    )
    late = yonbip_stream(url, tmp_path)
    late.vendor.clock = lambda: 1_000_000.0  # type: ignore[attr-defined]  # 1970: outside the 5 minutes
    with pytest.raises(ConfigError, match="时间戳"):
        late.check()
    assert SECRET not in (books[0] / "peer.log").read_text()


def test_an_expired_token_is_fetched_again_once(books: tuple[Path, str], tmp_path: Path) -> None:
    url = books[1]
    stream = yonbip_stream(url, tmp_path, paginator={"type": "page_number", "page_size": 30})
    stream.check()
    peer_post(url, "/_peer/faults", {"expire_tokens": True, "unavailable_next": 1})
    records = read_all(stream, batch_size=500)
    assert len(records) >= 90 and stream.vendor.logins == 2 and stream.http.retries == 1  # type: ignore[attr-defined]


def test_a_voucher_deleted_while_paging_or_a_pager_ignored_fails_the_read(tmp_path: Path) -> None:
    """Page numbers over a source that changes shift the pages (a voucher would be skipped), and a vendor
    that ignores pageIndex answers page 1 for ever: both fail the read, naming why, before a cursor moves."""
    data = tmp_path / "books"
    seed_sample_erp(f"sqlite:///{data / 'erp.sqlite'}", data / "attachments", vouchers=60)
    process, url = run_peer(data, tmp_path / "peer.log")
    try:
        stream = yonbip_stream(url, tmp_path, paginator={"type": "page_number", "page_size": 10})
        peer_post(url, "/_peer/faults", {"delete": {"after": 2, "voucher": 3}})
        with pytest.raises(SourceError, match=r"now counts \d+ records, \d+ when the read began"):
            read_all(stream, batch_size=500)
        peer_post(url, "/_peer/faults", {"ignore_page": True})
        with pytest.raises(SourceError, match="came twice in one read"):
            read_all(stream, batch_size=500)
    finally:
        stop_peer(process)  # type: ignore[arg-type]


def test_yonbip_books_archived_once_and_late_entries_into_earlier_periods_found(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs archive the books once. Then the accountant books two vouchers late: one into last
    period but one (结转), found by the next run because it asks from ~3 periods back; one into period 3
    (an old 调整), which only `sync --full` can find. No token or secret lands in runs or the catalog."""
    seed(hub, vouchers=150)
    process, url = run_peer(hub.home / "sample_erp", hub.home / "peer.log")
    erp = hub.home / "sample_erp" / "erp.sqlite"
    try:
        for name, value in {
            "YONBIP_URL": url,
            "YONBIP_APP_KEY": APP_KEY,
            "YONBIP_APP_SECRET": SECRET,
        }.items():
            monkeypatch.setenv(name, value)
        first = run_sync("erp_yonbip", "yb-1")
        second = run_sync("erp_yonbip", "yb-2")
        with sqlite3.connect(erp) as db:
            (latest,) = db.execute("SELECT max(updated_at) FROM erp_voucher").fetchone()
        late = _book_late(erp, period=11, new_id=9001, after=latest)
        old = _book_late(erp, period=3, new_id=9002, after=latest)
        third = run_sync("erp_yonbip", "yb-3")
        full = run_sync("erp_yonbip", "yb-4", from_start=True)
        issued = peer_stats(url)["issued"]
    finally:
        stop_peer(process)  # type: ignore[arg-type]
    with sqlite3.connect(erp) as db:
        (total,) = db.execute("SELECT count(*) FROM erp_voucher WHERE id < 9000").fetchone()
    assert first["status"] == "success" and first["archived"] + first["quarantined"] == total
    assert first["archived"] > 130 and second["archived"] == 0 and second["new_versions"] == 0
    assert third["archived"] == 1 and full["archived"] == 1 and full["new_versions"] == 0
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        found = dict(
            s.execute(
                select(ArchiveRecordRow.business_id, ArchiveRecordRow.archival_code).where(
                    ArchiveRecordRow.source_id == "erp_yonbip"
                )
            ).all()
        )
    catalog.dispose()
    assert {late, old} <= set(found) and len(found) == first["archived"] + 2
    assert issued and all(isinstance(t, str) for t in issued)
    for path in [hub.home / "catalog.sqlite", *(p for p in (hub.home / "runs").rglob("*") if p.is_file())]:
        data = path.read_bytes()
        assert SECRET.encode() not in data, path
        assert not any(token.encode() in data for token in issued), f"an access_token is in {path}"


def _book_late(erp: Path, *, period: int, new_id: int, after: str) -> str:
    """A copy of a clean 2025 voucher of `period`, booked now (updated_at after every other)."""
    with sqlite3.connect(erp) as db:
        (source,) = db.execute(
            "SELECT v.id FROM erp_voucher v WHERE v.period = ? AND NOT EXISTS (SELECT 1 FROM erp_voucher_line l"
            " WHERE l.voucher_id = v.id AND (l.account_code IS NULL OR l.account_code = '')) AND"
            " v.voucher_date LIKE '2025-%' ORDER BY v.id LIMIT 1",
            (period,),
        ).fetchone()
        (number,) = db.execute("SELECT max(voucher_no) + 1 FROM erp_voucher").fetchone()
    book_copy_of_voucher(f"sqlite:///{erp}", source, new_id, number)
    stamp = (dt.datetime.fromisoformat(after) + dt.timedelta(days=2, minutes=new_id - 9000)).isoformat(" ")
    with sqlite3.connect(erp) as db:
        db.execute("UPDATE erp_voucher SET updated_at = ? WHERE id = ?", (stamp, new_id))
    return str(new_id)
