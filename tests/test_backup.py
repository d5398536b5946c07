"""备份: `archive-hub backup DEST` copies what the backup lacks, verified, and a catalog copy that lists
exactly those packages, so the backup alone passes `verify` (a restore test)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import EventRow
from archive_hub.pipeline import run_sync
from archive_hub.verification import verify_archive
from archive_sink.filesystem import published_packages
from connectors.erp.sample_erp.seed import touch_voucher
from tests.conftest import Hub, seed
from tests.test_cli import cli


def restored(report_copy: Path, backup: Path, scratch: Path) -> tuple[bool, int, list[str]]:
    """Verify the backup on its own: its catalog copy (copied again, verify logs into it) and its packages."""
    catalog_file = scratch / "restored.sqlite"
    shutil.copyfile(report_copy, catalog_file)
    catalog = Catalog(f"sqlite:///{catalog_file}")
    result = verify_archive(catalog, backup / "archive")
    catalog.dispose()
    catalog_file.unlink()
    return result.ok, result.packages, result.problems


def test_backup_copies_what_is_new_verified_and_the_backup_alone_passes_verify(
    hub: Hub, catalog_url: str
) -> None:
    seed(hub, vouchers=120, bad_records=False)
    run_sync("erp_sample", "run-1")
    dest = hub.home / "backup"
    first = cli("backup", str(dest))
    assert first.returncode == 0, first.stderr
    assert "120 package(s) copied" in first.stdout and "0 already there" in first.stdout
    originals = {
        p.relative_to(hub.settings.archive_root): p for p in published_packages(hub.settings.archive_root)
    }
    copies = {p.relative_to(dest / "archive"): p for p in published_packages(dest / "archive")}
    assert set(copies) == set(originals)
    for rel, original in originals.items():  # byte for byte
        for f in original.rglob("*"):
            if f.is_file():
                assert (copies[rel] / f.relative_to(original)).read_bytes() == f.read_bytes()
    assert not (dest / "archive" / ".partial").exists()

    if catalog_url.startswith("sqlite"):
        (copy,) = (dest / "catalog").glob("catalog-*.sqlite")
        assert restored(copy, dest, hub.home) == (True, 120, [])
    else:
        assert "PostgreSQL: back it up with the database's own tools" in first.stdout
        assert not (dest / "catalog").exists()

    again = cli("backup", str(dest))
    assert (
        again.returncode == 0
        and "0 package(s) copied" in again.stdout
        and "120 already there" in again.stdout
    )
    touch_voucher(hub.erp_url, 5, new_summary="更正摘要")
    run_sync("erp_sample", "run-2")
    third = cli("backup", str(dest))
    assert "1 package(s) copied" in third.stdout  # the new version, nothing else
    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        logged = s.execute(select(EventRow).where(EventRow.kind == "backed-up")).scalars().all()
    catalog.dispose()
    assert [e.subject for e in logged] == [str(dest)] * 3


def test_a_damaged_original_is_not_backed_up_and_a_damaged_copy_is_found_by_check(hub: Hub) -> None:
    seed(hub, vouchers=40, bad_records=False)
    run_sync("erp_sample", "run-1")
    dest = hub.home / "backup"
    victim = published_packages(hub.settings.archive_root)[7]
    voucher = victim / "data" / "voucher.xml"
    voucher.write_bytes(voucher.read_bytes().replace(b"</", b" </", 1))
    out = cli("backup", str(dest))
    assert out.returncode == 2
    code = victim.parent.name
    assert (
        f"{code} v1: not backed up, the original does not match the catalog: data/voucher.xml" in out.stderr
    )
    assert "39 package(s) copied" in out.stdout
    assert not (dest / "archive" / victim.relative_to(hub.settings.archive_root)).exists()
    assert not (dest / "archive" / ".partial").exists()

    other = (
        dest
        / "archive"
        / published_packages(hub.settings.archive_root)[3].relative_to(hub.settings.archive_root)
    )
    (other / "data" / "metadata.xml").write_bytes(b"<broken/>")
    assert cli("backup", str(dest)).returncode == 2  # the damaged original again, the copy not looked at
    checked = cli("backup", str(dest), "--check")
    assert f"backup copy of {other.parent.name} v1: data/metadata.xml" in checked.stderr
    assert "39 re-hashed" in checked.stdout


def test_a_backup_inside_the_archive_or_an_unwritable_one_is_refused_in_one_line(hub: Hub) -> None:
    seed(hub, vouchers=10, bad_records=False)
    run_sync("erp_sample", "run-1")
    inside = cli("backup", str(hub.settings.archive_root / "backup"))
    assert (
        inside.returncode == 2
        and "overlaps the archive" in inside.stderr
        and "Traceback" not in inside.stderr
    )
    blocker = hub.home / "file"
    blocker.write_text("not a folder")
    nowhere = cli("backup", str(blocker / "backup"))
    assert (
        nowhere.returncode == 2
        and "cannot back up to" in nowhere.stderr
        and "Traceback" not in nowhere.stderr
    )
