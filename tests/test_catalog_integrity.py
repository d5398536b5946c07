"""四性检测 on the catalog as a whole: what `verify` finds that no single package can show.

Each test archives real vouchers, then damages the catalog the way a lost row, a hand edit or an
insider would, and checks that verify names the class, the 档号 and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from archive_hub.catalog import Catalog
from archive_hub.catalog.history import RecordHistory, record_history
from archive_hub.catalog.models import ArchiveRecordRow, FileRow, PackageRow
from archive_hub.pipeline import run_sync
from archive_hub.verification import verify_archive, verify_record
from archive_sink.hashing import digests
from tests.conftest import Hub


@pytest.fixture
def archived(seeded_hub: Hub, catalog_url: str) -> Iterator[tuple[Catalog, Path]]:
    """120 sample vouchers synced for real, on SQLite and on PostgreSQL; the catalog and the archive root."""
    run_sync("erp_sample", "run-1")
    catalog = Catalog(seeded_hub.settings.catalog_url)
    yield catalog, seeded_hub.settings.archive_root
    catalog.dispose()


def _history(catalog: Catalog, code: str) -> RecordHistory:
    with catalog.reading() as s:
        history = record_history(s, code)
    assert history is not None
    return history


def _record(catalog: Catalog, item_no: int) -> tuple[int, str, PackageRow]:
    with catalog.reading() as s:
        record = s.execute(
            select(ArchiveRecordRow).where(
                ArchiveRecordRow.item_no == item_no, ArchiveRecordRow.category == "PZ"
            )
        ).scalar_one()
        package = s.execute(select(PackageRow).where(PackageRow.record_id == record.id)).scalar_one()
        return record.id, record.archival_code, package


def test_verify_names_a_gap_in_the_item_numbers_and_a_code_that_breaks_the_rule(
    archived: tuple[Catalog, Path],
) -> None:
    catalog, root = archived
    assert verify_archive(catalog, root).ok
    # A record row lost from the catalog (with its package rows): its 件号 is a gap in the class.
    record_id, code, package = _record(catalog, 7)
    with catalog.transaction() as s:
        s.execute(delete(FileRow).where(FileRow.package_id == package.id))
        s.execute(delete(PackageRow).where(PackageRow.id == package.id))
        s.execute(delete(ArchiveRecordRow).where(ArchiveRecordRow.id == record_id))
    label = code.rsplit("-", 1)[0]  # J001-KJ·2025-D30-PZ
    problems = verify_archive(catalog, root).problems
    gap = [p for p in problems if p.startswith(f"{label}: 件号 0007 handed out but held by no record")]
    assert len(gap) == 1, problems
    assert f"{package.path}: package on disk is not in the catalog" in problems
    # The same finding when only that class is verified; none when another year is.
    assert any(
        p.startswith(f"{label}: 件号 0007") for p in verify_archive(catalog, root, code_prefix=label).problems
    )
    other_year = verify_archive(catalog, root, code_prefix=label.replace("2025", "2024"))
    assert not any("件号" in p for p in other_year.problems)
    # A 档号 edited by hand no longer follows the rule for its parts.
    _, code_12, _ = _record(catalog, 12)
    forged = code_12.replace("-0012", "-9012")
    with catalog.transaction() as s:
        s.execute(update(ArchiveRecordRow).where(ArchiveRecordRow.item_no == 12).values(archival_code=forged))
    problems = verify_archive(catalog, root).problems
    assert any(p.startswith(f"{forged}: does not follow the 档号 rule") and code_12 in p for p in problems), (
        problems
    )


def test_verify_names_a_number_the_counter_never_handed_out(archived: tuple[Catalog, Path]) -> None:
    catalog, root = archived
    _, code, _ = _record(catalog, 5)
    label = code.rsplit("-", 1)[0]
    with catalog.transaction() as s:
        s.execute(update(ArchiveRecordRow).where(ArchiveRecordRow.item_no == 5).values(item_no=9999))
    problems = verify_archive(catalog, root).problems
    assert any(p.startswith(f"{label}: 件号 0005 handed out but held by no record") for p in problems), (
        problems
    )
    assert any(p.startswith(f"{label}: 件号 9999 never handed out by the class's counter") for p in problems)
    assert any(p.startswith(f"{code}: does not follow the 档号 rule") for p in problems)


def _rewrite_like_an_insider(catalog: Catalog, root: Path, package: PackageRow) -> None:
    """Change the voucher's date, then redo every hash that covers it: metadata.xml, both manifests, the
    tag manifest, and the catalog's rows. Every per-package check is satisfied afterwards."""
    bag = root / package.path
    voucher = bag / "data" / "voucher.xml"
    data = voucher.read_bytes()
    changed = re.sub(
        rb"(<\xe5\x87\xad\xe8\xaf\x81\xe6\x97\xa5\xe6\x9c\x9f>\d{4}-\d{2}-)(\d{2})",
        rb"\g<1>28",
        data,
        count=1,
    )
    if changed == data:
        changed = data.replace(b"-28<", b"-27<", 1)
    assert changed != data and len(changed) == len(data)
    replaced = {}
    todo = [("data/voucher.xml", changed)]
    for path in ("data/metadata.xml", "manifest-sha256.txt", "manifest-sm3.txt", "tagmanifest-sha256.txt"):
        todo.append((path, None))  # type: ignore[arg-type]
    new_rows = {}
    for path, content in todo:
        old = (bag / path).read_bytes()
        new = content if content is not None else old
        for before, after in replaced.items():
            new = new.replace(before, after)
        if new == old:
            continue
        (bag / path).write_bytes(new)
        (old_sha, old_sm3), (new_sha, new_sm3) = digests(old), digests(new)
        replaced[old_sha.encode()] = new_sha.encode()
        replaced[old_sm3.encode()] = new_sm3.encode()
        new_rows[path] = (new_sha, new_sm3, len(new))
    assert set(new_rows) == {
        "data/voucher.xml",
        "data/metadata.xml",
        "manifest-sha256.txt",
        "manifest-sm3.txt",
        "tagmanifest-sha256.txt",
    }
    with catalog.transaction() as s:
        for path, (sha, sm3, size) in new_rows.items():
            s.execute(
                update(FileRow)
                .where(FileRow.package_id == package.id, FileRow.path == path)
                .values(sha256=sha, sm3=sm3, size=size)
            )
        s.execute(
            update(PackageRow)
            .where(PackageRow.id == package.id)
            .values(
                manifest_sha256=new_rows["manifest-sha256.txt"][0],
                manifest_sm3=new_rows["manifest-sm3.txt"][1],
            )
        )


def test_a_package_rewritten_with_its_catalog_rows_is_caught_by_the_chain(
    archived: tuple[Catalog, Path],
) -> None:
    catalog, root = archived
    _, code, package = _record(catalog, 21)
    _rewrite_like_an_insider(catalog, root, package)
    problems = verify_archive(catalog, root).problems
    # Manifests, tag manifest, metadata and catalog rows all agree again: only the chain remembers.
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{code} v1: manifest-sha256.txt is not the one the event chain recorded")
    assert verify_record(catalog, root, _history(catalog, code)).problems == problems


def test_a_missing_version_and_a_version_registered_by_hand_are_named(archived: tuple[Catalog, Path]) -> None:
    catalog, root = archived
    record_id, code, v1 = _record(catalog, 30)
    with catalog.transaction() as s:
        s.execute(update(ArchiveRecordRow).where(ArchiveRecordRow.id == record_id).values(current_version=2))
    problems = verify_archive(catalog, root).problems
    expected = f"{code}: the catalog says version 2 is current but holds 1 package(s), versions 1..1"
    assert any(p.startswith(expected) for p in problems), problems
    assert any(
        "version 2 is current" in p for p in verify_record(catalog, root, _history(catalog, code)).problems
    )
    # Someone registers that version 2 by hand, outside the hub: a copy of v1's rows, pointing at v1's
    # files, so every per-package check passes. The chain never recorded it.
    with catalog.transaction() as s:
        copy = {c.name: getattr(v1, c.name) for c in PackageRow.__table__.columns if c.name != "id"}
        s.execute(
            PackageRow.__table__.insert().values(
                copy | {"version": 2, "previous_package_id": v1.id, "run_id": "by-hand"}
            )
        )
        v2_id = s.execute(
            select(PackageRow.id).where(PackageRow.record_id == record_id, PackageRow.version == 2)
        ).scalar_one()
        for f in s.execute(select(FileRow.__table__).where(FileRow.package_id == v1.id)).mappings().all():
            s.execute(
                FileRow.__table__.insert().values(
                    {k: v for k, v in f.items() if k != "id"} | {"package_id": v2_id}
                )
            )
    problems = verify_archive(catalog, root).problems
    assert problems == [f"{code} v2: no registration event in the event chain (process history incomplete)"]
