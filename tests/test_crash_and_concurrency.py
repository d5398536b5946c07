"""Crash safety of the archive step (a real SIGKILL mid-write) and 档号 allocation under concurrency."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog, sequences
from archive_hub.catalog.history import record_history
from archive_hub.catalog.models import ArchiveRecordRow, PackageRow, QuarantineRow
from archive_hub.pipeline import run_step, run_sync
from archive_hub.verification import verify_archive, verify_record
from archive_sink.filesystem import published_packages, verify_package_dir
from tests.conftest import Hub, book_copy_of_voucher, override_erp_sample, run_at_once, seed

ARCHIVE_STEP = "from archive_hub.pipeline import run_step; run_step('archive', 'erp_sample', 'crash-run')"


def small_batches(hub: Hub, monkeypatch, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    override_erp_sample(hub, monkeypatch, "batch_size: 500", f"batch_size: {batch_size}")


def visible_packages(root: Path) -> list[Path]:
    return published_packages(root)


def test_killing_the_archiver_mid_write_loses_and_duplicates_nothing(hub: Hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seed(hub, vouchers=600, attachment_every=1, attachment_size=30_000, bad_records=False)
    small_batches(hub, monkeypatch, 40)
    for step in ("extract", "map", "validate"):
        run_step(step, "erp_sample", "crash-run")
    root = hub.settings.archive_root
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", ARCHIVE_STEP], env=os.environ.copy())
        before = len(visible_packages(root))
        deadline = time.monotonic() + 60
        # wait until this attempt has published something, then kill at a random moment after it
        while len(visible_packages(root)) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        # whatever is visible is whole: every published package verifies against its own manifests
        for package in visible_packages(root):
            assert verify_package_dir(package) == [], package
    assert kills >= 1, "the archiver finished before it could be killed; the test proved nothing"
    run_step("archive", "erp_sample", "crash-run")
    summary = run_step("finalize", "erp_sample", "crash-run")
    assert summary["status"] == "success"
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        records = s.execute(select(ArchiveRecordRow)).scalars().all()
        packages = s.execute(select(PackageRow)).scalars().all()
    assert len(records) == 600 and all(r.status == "archived" for r in records)
    assert Counter(r.business_id for r in records).most_common(1)[0][1] == 1
    assert sorted(r.item_no for r in records) == list(range(1, 601))  # gap-free despite the kills
    assert len(packages) == 600 and {p.version for p in packages} == {1}
    assert len(visible_packages(root)) == 600
    report = verify_archive(catalog, root)
    assert report.ok, report.problems[:5]
    assert not any((hub.settings.staging_root / "erp_sample").iterdir())  # crash leftovers were cleaned
    catalog.dispose()


def _allocate_many(url: str, key: tuple[str, int, str, str], rounds: int, out) -> None:  # type: ignore[no-untyped-def]
    catalog = Catalog(url)
    got = []
    for i in range(rounds):
        n = 1 + (i % 3)
        with catalog.transaction() as session:
            first = sequences.allocate(session, {key: n})[key]
        got.extend(range(first, first + n))
    catalog.dispose()
    out.put(got)


def test_archival_numbers_are_unique_and_gap_free_under_concurrent_runs(hub: Hub, catalog_url: str) -> None:
    Catalog(catalog_url).create_schema()
    key = ("J001", 2025, "D30", "PZ")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_allocate_many, args=(catalog_url, key, 40, out)) for _ in range(4)]
    for w in workers:
        w.start()
    numbers = []
    for _ in workers:
        numbers.extend(out.get(timeout=120))
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert len(numbers) == len(set(numbers)), "two runs were given the same 件号"
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), "件号 has gaps"


def test_a_reservation_left_by_a_vanished_record_is_reused_so_no_gap_remains(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from archive_hub.pipeline.archiver import Archiver
    from connectors.erp.sample_erp.seed import touch_voucher

    seed(hub, vouchers=30, bad_records=False)
    for step in ("extract", "map", "validate"):
        run_step(step, "erp_sample", "r1")

    def dies(self: Archiver, plan: list[object]) -> None:
        raise SystemExit("the run dies here: 30 档号 reserved, no package yet")

    with monkeypatch.context() as patch:
        patch.setattr(Archiver, "_write", dies)
        with pytest.raises(SystemExit):
            run_step("archive", "erp_sample", "r1")
    erp = sqlite3.connect(hub.erp_url.removeprefix("sqlite:///"))
    with erp:  # voucher 5 is deleted in the ERP before the next run
        erp.execute("delete from erp_attachment where voucher_id=5")
        erp.execute("delete from erp_voucher_line where voucher_id=5")
        erp.execute("delete from erp_voucher where id=5")
    erp.close()
    run_sync("erp_sample", "r2")
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        held = (
            s.execute(select(ArchiveRecordRow).where(ArchiveRecordRow.status == "reserved")).scalars().all()
        )
    assert [r.business_id for r in held] == ["5"]  # a gap in the archived sequence, reported by verify
    assert any(
        "reserved but no package" in p for p in verify_archive(catalog, hub.settings.archive_root).problems
    )
    with catalog.reading() as s:  # `archive-hub show <档号> --verify` says the same of that one record
        history = record_history(s, held[0].archival_code)
    assert history is not None and history.versions == []
    (problem,) = verify_record(catalog, hub.settings.archive_root, history).problems
    assert problem.startswith(f"{held[0].archival_code}: 档号 reserved but no package was published")
    book_copy_of_voucher(hub.erp_url, 6, 777, 999)  # a new voucher is booked: it takes the abandoned 件号
    touch_voucher(hub.erp_url, 777, new_summary="新凭证")
    run_sync("erp_sample", "r3")
    with catalog.reading() as s:
        records = s.execute(select(ArchiveRecordRow)).scalars().all()
    assert all(r.status == "archived" for r in records)
    assert sorted(r.item_no for r in records) == list(range(1, 31))
    assert next(r for r in records if r.business_id == "777").item_no == held[0].item_no
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()


def test_a_staged_package_that_reads_back_differently_is_never_published(tmp_path: Path) -> None:
    import datetime as dt

    import pytest

    from archive_sink.filesystem import FilesystemArchive, StagingVerificationError
    from archive_sink.package import build_package
    from mappings import load_mapping
    from tests.test_mapping import CONTEXT, MAPPING, RAW

    record = load_mapping(MAPPING).apply(RAW, "42", CONTEXT).model_copy(update={"attachments": []})
    package = build_package(
        record,
        [],
        archival_code="J001-KJ·2025-D30-PZ-0001",
        item_no=1,
        version=1,
        archived_at=dt.datetime.now(dt.UTC),
        retention_due=None,
    )
    store = FilesystemArchive(tmp_path / "archive")
    staged = store.stage(package)
    store.verify_staged(staged)  # a faithful copy passes
    (staged.staging_path / "data" / "voucher.xml").write_bytes(b"<short/>")  # a short or corrupted write
    with pytest.raises(StagingVerificationError, match="staged data/voucher.xml differs"):
        store.verify_staged(staged)
    assert published_packages(tmp_path / "archive") == []


def _sync_in_process(run_id: str) -> None:
    run_sync("erp_sample", run_id)


def test_two_runs_of_one_source_at_once_archive_each_voucher_once(hub: Hub, catalog_url: str) -> None:
    seed(hub, vouchers=150)
    run_at_once(_sync_in_process, ("parallel-0",), ("parallel-1",))
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        records = s.execute(select(ArchiveRecordRow)).scalars().all()
        packages = s.execute(select(PackageRow)).scalars().all()
        items = s.execute(select(QuarantineRow).where(QuarantineRow.status == "open")).scalars().all()
    assert len(records) == 150 and sorted(r.item_no for r in records) == list(range(1, 151))
    assert len(packages) == 150 and len(items) == 6
    assert len(published_packages(hub.settings.archive_root)) == 150
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()


def test_parallel_workers_number_items_in_source_order_even_after_a_failing_batch(
    hub: Hub, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers archive batches of 15 at once and take turns to reserve 档号.

    A batch that fails in a worker ends the step with its own error (the batches behind it do not
    wait forever for their turn); the re-run archives everything, and 件号 follow valid.jsonl, gap-free.
    """
    import json

    from archive_hub.pipeline.archiver import Archiver

    monkeypatch.setenv("ARCHIVE_HUB_WORKERS", "2")
    small_batches(hub, monkeypatch, 15)
    seed(hub, vouchers=100, bad_records=False)
    for step in ("extract", "map", "validate"):
        run_step(step, "erp_sample", "r1")
    valid = hub.settings.runs_root / "erp_sample" / "r1" / "valid.jsonl"
    order = [json.loads(line)["source"]["business_id"] for line in valid.read_text().splitlines()]
    real_write = Archiver._write

    def failing_write(self: Archiver, plan: list) -> None:  # type: ignore[type-arg]
        if any(p.record.source.business_id == order[40] for p in plan):
            raise RuntimeError("disk on fire in batch 2")
        real_write(self, plan)

    monkeypatch.setattr(Archiver, "_write", failing_write)  # the forked workers inherit it
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="disk on fire in batch 2"):
        run_step("archive", "erp_sample", "r1")
    assert time.monotonic() - started < 60
    monkeypatch.setattr(Archiver, "_write", real_write)
    result = run_step("archive", "erp_sample", "r1")
    assert result["workers"] == 2
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        records = s.execute(select(ArchiveRecordRow)).scalars().all()
    assert len(records) == 100 and all(r.status == "archived" for r in records)
    assert [r.business_id for r in sorted(records, key=lambda r: r.item_no)] == order
    assert sorted(r.item_no for r in records) == list(range(1, 101))
    assert verify_archive(catalog, hub.settings.archive_root).ok
    catalog.dispose()


def test_verify_waits_for_an_archive_step_in_flight_instead_of_reporting_it(
    hub: Hub, catalog_url: str
) -> None:
    """A scheduled verify meets syncs: their reserved 档号 and not yet registered packages are no problem."""
    import shutil
    import threading

    from sqlalchemy import update

    from archive_hub.catalog.locks import source_lock
    from archive_hub.catalog.models import utcnow

    seed(hub, vouchers=20, bad_records=False)
    run_sync("erp_sample", "r1")
    root = hub.settings.archive_root
    catalog = Catalog(catalog_url)
    # A run in flight: a new record's 档号 reserved, a new version renamed into place, neither registered yet.
    with catalog.transaction() as s:
        record = s.execute(select(ArchiveRecordRow).where(ArchiveRecordRow.business_id == "3")).scalar_one()
        record.status, code, record_id = "reserved", record.archival_code, record.id
    package = next(p for p in published_packages(root) if p.parent.name == code)
    in_flight = package.parent / "v2"
    shutil.copytree(package, in_flight)
    results: list = []

    def verify() -> None:
        own = Catalog(catalog_url)
        results.append(verify_archive(own, root))
        own.dispose()

    with source_lock(catalog, hub.settings.staging_root / "erp_sample", "erp_sample"):  # the step holds it
        worker = threading.Thread(target=verify)
        worker.start()
        worker.join(2.0)
        assert worker.is_alive(), results[0].problems if results else None  # it waits instead of judging
        with catalog.transaction() as s:  # ... the step registers what it did and commits
            s.execute(
                update(ArchiveRecordRow).where(ArchiveRecordRow.id == record_id).values(status="archived")
            )
            s.add(
                PackageRow(
                    record_id=record_id,
                    version=2,
                    path=str(in_flight.relative_to(root)),
                    fingerprint="0" * 64,
                    manifest_sha256="0" * 64,
                    manifest_sm3="0" * 64,
                    file_count=0,
                    byte_size=0,
                    run_id="r2",
                    created_at=utcnow(),
                )
            )
    worker.join(60)
    assert not worker.is_alive() and results[0].ok, results[0].problems
    assert results[0].packages == 20
    catalog.dispose()
