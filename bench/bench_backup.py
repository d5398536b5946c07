"""Backup benchmark: `backup` to a folder and to an S3-compatible store, each beside a raw copy of the same bytes.

Why these baselines: a backup verifies every copy before it counts as held (SHA-256 + SM3 of the original
against the catalog, the copy re-read, manifests and metadata checked), and in an object store it reads
every object back. The raw figures copy the same files doing none of that, in the same run:
  * folder: `shutil.copytree` of every package into a fresh tree, one syncfs per 200 packages, as the
    backup does (its limit);
  * S3: `put_object` of every file of every package with the same ChecksumSHA256 and the same 8 packages in
    flight, no read-back, no marker (its limit). The store is moto's S3 server, a local Python process,
    so the S3 figures say what the hub's own work costs beside the store's, not what AWS would do.

    uv run python -m bench.bench_backup        # 1000 vouchers, ~50 KB attachment each (BENCH_BACKUP_VOUCHERS)
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_ROOT = PROJECT_ROOT / "var" / "bench"
MB = 1_000_000


def raw_folder_copy(archive: Path, packages: list[Path], target: Path) -> None:
    from archive_sink.durability import syncfs

    target.mkdir(parents=True)
    for start in range(0, len(packages), 200):
        for pkg in packages[start : start + 200]:
            shutil.copytree(pkg, target / pkg.relative_to(archive))
        syncfs(target)


def raw_s3_put(archive: Path, packages: list[Path], client: object, bucket: str) -> None:
    from archive_sink.object_store import sha256_b64

    def put_package(pkg: Path) -> None:
        for f in sorted(p for p in pkg.rglob("*") if p.is_file()):
            data = f.read_bytes()
            client.put_object(  # type: ignore[attr-defined]
                Bucket=bucket,
                Key=f"raw/{f.relative_to(archive).as_posix()}",
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=sha256_b64(data),
            )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put_package, packages))


def row(label: str, seconds: float, packages: int, size: int, note: str = "") -> None:
    print(
        f"{label:<44} {seconds:>8.2f} {packages / seconds:>12.0f} {size / MB / seconds:>8.1f}   {note}",
        flush=True,
    )


def main() -> int:
    n = int(os.environ.get("BENCH_BACKUP_VOUCHERS", "1000"))
    home = BENCH_ROOT / f"backup-{dt.datetime.now():%Y%m%d-%H%M%S}"
    home.mkdir(parents=True)
    os.environ["ARCHIVE_HUB_HOME"] = str(home)
    for name in ("ARCHIVE_HUB_CATALOG_URL", "ARCHIVE_HUB_ARCHIVE_ROOT", "ARCHIVE_HUB_STAGING_ROOT"):
        os.environ.pop(name, None)
    print(f"backup benchmark: {n} vouchers, ~50 KB attachment each, home {home}", flush=True)

    from archive_hub.backup import backup
    from archive_hub.catalog import Catalog
    from archive_hub.pipeline import run_sync
    from archive_hub.settings import Settings
    from archive_sink.durability import syncfs
    from archive_sink.filesystem import published_packages
    from bench.bench_archive import seed_bench_erp

    seed_bench_erp(home, n)
    summary = run_sync("erp_sample", "bench-backup")
    settings = Settings.from_env()
    packages = published_packages(settings.archive_root)
    size = sum(f.stat().st_size for p in packages for f in p.rglob("*") if f.is_file())
    print(f"  archived {summary['archived']} packages, {size / MB:.1f} MB (not measured)", flush=True)
    syncfs(home)

    from tests.s3_server import start_moto

    process, endpoint = start_moto(home / "moto.log")
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="bench-raw")
        client.create_bucket(Bucket="bench-backup")
        catalog = Catalog(settings.catalog_url)
        count = len(packages)

        print(f"\n{'figure':<44} {'time s':>8} {'packages/s':>12} {'MB/s':>8}   limit", flush=True)
        started = time.perf_counter()
        raw_folder_copy(settings.archive_root, packages, home / "raw-folder")
        raw_folder = time.perf_counter() - started
        row("raw folder: copytree + syncfs per 200", raw_folder, count, size, "the folder limit")
        started = time.perf_counter()
        report = backup(catalog, settings.archive_root, home / "backup-folder")
        folder_s = time.perf_counter() - started
        assert report.ok and report.copied == count, report.problems[:3]
        row(
            "backup to a folder (verified copies)",
            folder_s,
            count,
            size,
            f"{raw_folder / folder_s:.0%} of it",
        )

        started = time.perf_counter()
        raw_s3_put(settings.archive_root, packages, client, "bench-raw")
        raw_s3 = time.perf_counter() - started
        row("raw S3: put_object, 8 packages in flight", raw_s3, count, size, "the S3 limit (moto)")
        started = time.perf_counter()
        report = backup(catalog, settings.archive_root, "s3://bench-backup/hub")
        s3_s = time.perf_counter() - started
        assert report.ok and report.copied == count, report.problems[:3]
        row("backup to S3 (sent, read back, marker)", s3_s, count, size, f"{raw_s3 / s3_s:.0%} of it")
        started = time.perf_counter()
        report = backup(catalog, settings.archive_root, "s3://bench-backup/hub", check=True)
        check_s = time.perf_counter() - started
        assert report.ok and report.checked == count, report.problems[:3]
        row("backup --check on S3 (every copy re-read)", check_s, count, size, "")
        catalog.dispose()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
