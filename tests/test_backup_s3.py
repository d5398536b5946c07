"""异地备份 to an S3-compatible object store (moto's S3 server, a real HTTP process): `archive-hub backup
s3://bucket/prefix` holds every package byte for byte, counts a package as held only behind its marker,
re-reads copies with --check, follows destruction, and `archive-hub restore` brings the backup back into a
folder that passes `verify` on its own. The secret key never shows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, EventRow
from archive_hub.pipeline import run_sync
from archive_sink.filesystem import published_packages
from archive_sink.object_store import S3Location
from connectors.erp.sample_erp.seed import touch_voucher
from tests.conftest import Hub, seed
from tests.s3_server import S3_SECRET, s3_client
from tests.test_cli import cli
from tests.test_destruction import OLD_YEAR, WITNESS_ARGS, codes, sign_all


def bucket_files(endpoint: str, location: S3Location, folder: str) -> dict[str, bytes]:
    client = s3_client(endpoint)
    root = location.key(folder) + "/"
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=root):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=location.bucket, Key=item["Key"])["Body"].read()
            found[item["Key"].removeprefix(root)] = body
    return found


def package_files(root: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(root)): f.read_bytes()
        for pkg in published_packages(root)
        for f in sorted(pkg.rglob("*"))
        if f.is_file()
    }


def verify_restored(target: Path, catalog_copy: Path) -> str:
    out = cli(
        "verify",
        env={
            "ARCHIVE_HUB_CATALOG_URL": f"sqlite:///{catalog_copy}",
            "ARCHIVE_HUB_ARCHIVE_ROOT": str(target / "archive"),
        },
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_an_s3_backup_holds_every_package_byte_for_byte_and_restores_to_a_folder_that_verifies(
    hub: Hub, s3_backup: str, s3_endpoint: str
) -> None:
    seed(hub, vouchers=60, bad_records=False)
    run_sync("erp_sample", "run-1")
    location = S3Location.parse(s3_backup)
    first = cli("backup", s3_backup)
    assert first.returncode == 0, first.stderr
    assert "60 package(s) copied" in first.stdout and "0 already there" in first.stdout
    originals = package_files(hub.settings.archive_root)
    assert bucket_files(s3_endpoint, location, "archive") == originals  # every file, byte for byte
    markers = bucket_files(s3_endpoint, location, "committed")
    assert len(markers) == 60
    for name, body in markers.items():  # each marker lists its package's files with their own hashes
        rel = name.removesuffix(".json")
        listed = json.loads(body)["files"]
        assert listed == {
            path.removeprefix(rel + "/"): [
                hashlib.sha256(data).hexdigest(),
                hashlib.new("sm3", data).hexdigest(),
                len(data),
            ]
            for path, data in originals.items()
            if path.startswith(rel + "/")
        }
    catalog_objects = bucket_files(s3_endpoint, location, "catalog")
    (catalog_name,) = [n for n in catalog_objects if n.endswith(".sqlite")]
    marker = json.loads(catalog_objects[catalog_name + ".json"])  # the catalog copy's own marker
    assert marker["sha256"] == hashlib.sha256(catalog_objects[catalog_name]).hexdigest()
    assert f"catalog copy: {s3_backup}/catalog/{catalog_name}" in first.stdout

    again = cli("backup", s3_backup)
    assert "0 package(s) copied" in again.stdout and "60 already there" in again.stdout
    touch_voucher(hub.erp_url, 5, new_summary="更正摘要")
    run_sync("erp_sample", "run-2")
    third = cli("backup", s3_backup)
    assert "1 package(s) copied" in third.stdout  # the new version, nothing else

    target = hub.home / "restored"
    back = cli("restore", s3_backup, str(target))
    assert back.returncode == 0, back.stderr
    assert "61 package(s) restored" in back.stdout and "0 already there" in back.stdout
    assert package_files(target / "archive") == package_files(hub.settings.archive_root)
    assert not (target / "archive" / ".partial").exists()
    (catalog_copy,) = (target / "catalog").glob("catalog-*.sqlite")
    assert "packages 61," in verify_restored(target, catalog_copy)
    assert f"ARCHIVE_HUB_CATALOG_URL=sqlite:///{catalog_copy}" in back.stdout
    rerun = cli("restore", s3_backup, str(target))
    assert "0 package(s) restored" in rerun.stdout and "61 already there" in rerun.stdout

    outputs = "".join(r.stdout + r.stderr for r in (first, again, third, back, rerun))
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        logged = s.execute(select(EventRow).where(EventRow.kind == "backed-up")).scalars().all()
        everything = " ".join(f"{e.subject} {e.detail}" for e in s.execute(select(EventRow)).scalars())
    catalog.dispose()
    assert [e.subject for e in logged] == [s3_backup] * 3
    assert S3_SECRET not in outputs and S3_SECRET not in everything
    assert S3_SECRET.encode() not in catalog_copy.read_bytes()


def test_a_changed_copy_is_found_by_check_and_not_restored_and_an_unmarked_package_is_sent_again(
    hub: Hub, s3_backup: str, s3_endpoint: str
) -> None:
    seed(hub, vouchers=30, bad_records=False)
    run_sync("erp_sample", "run-1")
    assert cli("backup", s3_backup).returncode == 0
    location = S3Location.parse(s3_backup)
    client = s3_client(s3_endpoint)
    packages = published_packages(hub.settings.archive_root)
    damaged = packages[4].relative_to(hub.settings.archive_root).as_posix()
    unmarked = packages[9].relative_to(hub.settings.archive_root).as_posix()
    client.put_object(
        Bucket=location.bucket, Key=location.key("archive", damaged, "data/metadata.xml"), Body=b"<broken/>"
    )
    # a run that stopped after sending a package's files and before its marker
    client.delete_object(Bucket=location.bucket, Key=location.key("committed", unmarked) + ".json")

    restore_early = cli("restore", s3_backup, str(hub.home / "early"))
    assert restore_early.returncode == 2
    code_unmarked = packages[9].parent.name
    assert f"{code_unmarked} v1: not in the backup {s3_backup}" in restore_early.stderr

    checked = cli("backup", s3_backup, "--check")
    assert checked.returncode == 2
    code_damaged = packages[4].parent.name
    assert f"backup copy of {code_damaged} v1: data/metadata.xml" in checked.stderr
    assert "1 package(s) copied" in checked.stdout and "29 already there, 29 re-hashed" in checked.stdout
    assert location.key("committed", unmarked) + ".json" in [
        o["Key"] for o in client.list_objects_v2(Bucket=location.bucket)["Contents"]
    ]

    target = hub.home / "restored"
    back = cli("restore", s3_backup, str(target))
    assert back.returncode == 2
    assert (
        f"{code_damaged} v1: not restored, the backup copy does not match the catalog: data/metadata.xml"
        in back.stderr
    )
    assert "29 package(s) restored" in back.stdout and "Traceback" not in back.stderr
    assert not (target / "archive" / damaged).exists()
    assert not (target / "archive" / ".partial").exists()


@pytest.mark.parametrize("bucket", ["s3_backup", "s3_locked_backup"])
def test_a_destroyed_package_leaves_the_s3_backup_too(
    hub: Hub, s3_endpoint: str, bucket: str, request: pytest.FixtureRequest
) -> None:
    """In an Object Lock bucket too: the records long due carry no retention, so every version of them goes,
    while the 销毁清册 (永久) is put under a legal hold."""
    backup_url = request.getfixturevalue(bucket)
    seed(hub, vouchers=10, fiscal_year=OLD_YEAR, bad_records=False)
    run_sync("erp_sample", "run-1")
    assert cli("backup", backup_url).returncode == 0
    keep = codes(hub.settings.catalog_url)[0]
    assert cli("destruction", "hold", keep, "--reason", "未结清的债权债务").returncode == 0
    assert cli("destruction", "draw-up", "--opinion", "可销毁").returncode == 0
    sign_all(1)
    assert cli("destruction", "execute", "1", *WITNESS_ARGS).returncode == 0
    out = cli("backup", backup_url)
    assert out.returncode == 0, out.stderr
    assert "9 destroyed (销毁) package(s) removed" in out.stdout
    location = S3Location.parse(backup_url)
    held = {name.split("/")[3] for name in bucket_files(s3_endpoint, location, "archive")}
    destroyed = set(codes(hub.settings.catalog_url, "destroyed"))
    assert len(destroyed) == 9 and keep in held and not held & destroyed
    assert len(held) == 2  # the record held back and the 销毁清册, archived 永久
    assert {n.split("/")[3] for n in bucket_files(s3_endpoint, location, "committed")} == held
    client = s3_client(s3_endpoint)
    left = set()
    for folder in ("archive", "committed"):
        listed = client.list_object_versions(Bucket=location.bucket, Prefix=location.key(folder) + "/")
        for v in (*listed.get("Versions", []), *listed.get("DeleteMarkers", [])):
            left.add(v["Key"].removeprefix(location.key(folder) + "/").split("/")[3])
    assert left == held  # not a hidden version of a destroyed record left behind
    (register,) = held - {keep}
    register_keys = [k for k in bucket_files(s3_endpoint, location, "archive") if f"/{register}/" in k]
    head = client.head_object(Bucket=location.bucket, Key=location.key("archive", register_keys[0]))
    if bucket == "s3_locked_backup":
        assert head.get("ObjectLockLegalHoldStatus") == "ON"
        assert "S3 Object Lock (COMPLIANCE)" in out.stdout
    else:
        assert "ObjectLockLegalHoldStatus" not in head
    target = hub.home / "restored"
    assert cli("restore", backup_url, str(target)).returncode == 0
    (copy,) = (target / "catalog").glob("catalog-*.sqlite")
    assert "packages 2," in verify_restored(target, copy)


def test_in_an_object_lock_bucket_a_copy_is_kept_until_its_retention_ends_and_a_write_over_it_hides_nothing(
    hub: Hub, s3_locked_backup: str, s3_endpoint: str
) -> None:
    seed(hub, vouchers=20, bad_records=False)
    run_sync("erp_sample", "run-1")
    out = cli("backup", s3_locked_backup)
    assert out.returncode == 0, out.stderr
    assert "S3 Object Lock (COMPLIANCE): each object kept until its record's 保管期限 ends" in out.stdout
    location = S3Location.parse(s3_locked_backup)
    client = s3_client(s3_endpoint)
    package = published_packages(hub.settings.archive_root)[3]
    rel, code = package.relative_to(hub.settings.archive_root).as_posix(), package.parent.name
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        due = s.execute(
            select(ArchiveRecordRow.retention_due).where(ArchiveRecordRow.archival_code == code)
        ).scalar_one()
    catalog.dispose()
    assert due is not None and due > dt.date.today()  # 30年 from the year after fiscal 2025
    key = location.key("archive", rel, "data/voucher.xml")
    for locked in (key, location.key("committed", rel) + ".json"):
        head = client.head_object(Bucket=location.bucket, Key=locked)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"].date() == due
    with pytest.raises(ClientError, match="AccessDenied"):  # not even the bucket's owner deletes it
        client.delete_object(Bucket=location.bucket, Key=key, VersionId=head_version(client, location, key))

    client.put_object(Bucket=location.bucket, Key=key, Body=b"<forged/>")  # a write over the copy
    checked = cli("backup", s3_locked_backup, "--check")
    assert checked.returncode == 2
    assert (
        f"backup copy of {code} v1: data/voucher.xml: written over or deleted in {s3_locked_backup}"
        in checked.stderr
    )
    assert checked.stderr.count("problem:") == 1  # the pinned version itself is whole
    target = hub.home / "restored"
    back = cli("restore", s3_locked_backup, str(target))
    assert back.returncode == 0, back.stderr
    assert (target / "archive" / rel / "data/voucher.xml").read_bytes() == (
        package / "data/voucher.xml"
    ).read_bytes()
    (copy,) = (target / "catalog").glob("catalog-*.sqlite")
    assert "packages 20," in verify_restored(target, copy)


def head_version(client: object, location: S3Location, key: str) -> str:
    """The version a backup pinned: the oldest one of the key."""
    versions = client.list_object_versions(Bucket=location.bucket, Prefix=key)["Versions"]  # type: ignore[attr-defined]
    return min(versions, key=lambda v: v["LastModified"])["VersionId"]


def test_s3_faults_are_one_line_and_never_show_the_secret(hub: Hub, s3_backup: str) -> None:
    seed(hub, vouchers=10, bad_records=False)
    run_sync("erp_sample", "run-1")
    missing = cli("backup", "s3://no-such-bucket-archive-hub/备份")
    assert missing.returncode == 2
    assert "s3://no-such-bucket-archive-hub/备份: cannot reach the bucket: no such bucket" in missing.stderr
    unreachable = cli("backup", s3_backup, env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert unreachable.returncode == 2 and "cannot reach the bucket" in unreachable.stderr
    not_a_location = cli("backup", f"s3://AKIA:{S3_SECRET}@bucket/x")
    assert not_a_location.returncode == 2 and "credentials and endpoint come from" in not_a_location.stderr
    empty = cli("restore", s3_backup, str(hub.home / "restored"))
    assert empty.returncode == 2 and "holds no catalog copy" in empty.stderr
    for out in (missing, unreachable, not_a_location, empty):
        assert "Traceback" not in out.stderr and S3_SECRET not in out.stdout + out.stderr


def test_the_backup_dag_backs_up_to_s3_for_real_with_no_secret_in_its_log_or_xcom(
    hub: Hub, s3_backup: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_dag import run_airflow_dag, xcom_summary

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.setenv("ARCHIVE_HUB_BACKUP_DIR", s3_backup)
    seed(hub, vouchers=20, bad_records=False)
    run_sync("erp_sample", "run-1")
    log = hub.home / "backup.log"
    assert run_airflow_dag("backup_archive", hub.settings, log, timeout=240) == 0, log.read_text()[-3000:]
    summary = xcom_summary(hub, "backup_archive", "backup")
    assert summary["copied"] == 20 and summary["problems"] == 0
    assert str(summary["catalog_copy"]).startswith(f"{s3_backup}/catalog/catalog-")
    assert len(bucket_files(s3_endpoint, S3Location.parse(s3_backup), "committed")) == 20
    assert S3_SECRET not in log.read_text() and S3_SECRET not in json.dumps(summary)


def test_a_folder_backup_restores_too(hub: Hub) -> None:
    seed(hub, vouchers=20, bad_records=False)
    run_sync("erp_sample", "run-1")
    backup_dir = hub.home / "backup"
    assert cli("backup", str(backup_dir)).returncode == 0
    target = hub.home / "restored"
    back = cli("restore", str(backup_dir), str(target))
    assert back.returncode == 0, back.stderr
    assert "20 package(s) restored" in back.stdout
    assert package_files(target / "archive") == package_files(hub.settings.archive_root)
    (copy,) = (target / "catalog").glob("catalog-*.sqlite")
    assert "packages 20," in verify_restored(target, copy)
    nothing = cli("restore", str(hub.home / "no-backup-here"), str(hub.home / "r2"))
    assert nothing.returncode == 2 and "not a backup" in nothing.stderr and "Traceback" not in nothing.stderr


def test_a_backup_of_a_postgresql_catalog_restores_with_the_catalog_named(
    hub: Hub, s3_backup: str, pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup does not copy a PostgreSQL catalog (pg_dump does): restore lists the packages from the catalog
    it is given, and refuses in one line without one."""
    monkeypatch.setenv("ARCHIVE_HUB_CATALOG_URL", pg_database_url)
    seed(hub, vouchers=15, bad_records=False)
    run_sync("erp_sample", "run-1")
    out = cli("backup", s3_backup)
    assert out.returncode == 0, out.stderr
    assert "the catalog is on PostgreSQL: back it up with the database's own tools" in out.stdout
    target = hub.home / "restored"
    refused = cli("restore", s3_backup, str(target))
    assert refused.returncode == 2 and "holds no catalog copy" in refused.stderr
    back = cli("restore", s3_backup, str(target), "--catalog", pg_database_url)
    assert back.returncode == 0, back.stderr
    assert "15 package(s) restored" in back.stdout
    assert package_files(target / "archive") == package_files(hub.settings.archive_root)
    verified = cli("verify", env={"ARCHIVE_HUB_ARCHIVE_ROOT": str(target / "archive")})
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_file_larger_than_one_request_goes_in_parts_and_is_read_back_whole(
    hub: Hub, s3_backup: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files above SMALL_OBJECT go through boto3's managed (multipart) transfer; lowered here so an 11 MB scan
    takes that path, in parts of 5 MiB (the least S3 allows)."""
    import archive_hub.backup_stores as stores

    seed(hub, vouchers=4, attachment_every=1, attachment_size=11_000_000, bad_records=False)
    run_sync("erp_sample", "run-1")
    monkeypatch.setattr(stores, "SMALL_OBJECT", 100_000)
    monkeypatch.setattr(stores, "PART_SIZE", 5 << 20)
    from archive_hub.backup import backup

    catalog = Catalog(hub.settings.catalog_url)
    report = backup(catalog, hub.settings.archive_root, s3_backup)
    catalog.dispose()
    assert report.ok and report.copied == 4, report.problems
    location = S3Location.parse(s3_backup)
    client = s3_client(s3_endpoint)
    big = [
        item
        for item in client.list_objects_v2(Bucket=location.bucket, Prefix=location.key("archive") + "/")[
            "Contents"
        ]
        if item["Size"] > 10_000_000
    ]
    assert len(big) == 4
    for item in big:  # a multipart upload's ETag is "<md5 of the parts' md5s>-<number of parts>"
        assert client.head_object(Bucket=location.bucket, Key=item["Key"])["ETag"].strip('"').endswith("-3")
    assert bucket_files(s3_endpoint, location, "archive") == package_files(hub.settings.archive_root)
    target = hub.home / "restored"
    assert cli("restore", s3_backup, str(target)).returncode == 0
    assert package_files(target / "archive") == package_files(hub.settings.archive_root)


def test_restore_trusts_nothing_in_the_bucket_it_cannot_check(
    hub: Hub, s3_backup: str, s3_endpoint: str
) -> None:
    """Whoever can write to the bucket can plant a marker naming files outside the target, delete an object or
    drop a newer catalog copy: each is named, nothing is written outside the target, the rest is restored."""
    seed(hub, vouchers=12, bad_records=False)
    run_sync("erp_sample", "run-1")
    assert cli("backup", s3_backup).returncode == 0
    location = S3Location.parse(s3_backup)
    client = s3_client(s3_endpoint)
    packages = published_packages(hub.settings.archive_root)
    planted, emptied = (
        p.relative_to(hub.settings.archive_root).as_posix() for p in (packages[2], packages[5])
    )
    marker_key = location.key("committed", planted) + ".json"
    marker = json.loads(client.get_object(Bucket=location.bucket, Key=marker_key)["Body"].read())
    marker["files"]["../../../../../escaped.txt"] = ["0" * 64, "0" * 64, 1]
    client.put_object(Bucket=location.bucket, Key=marker_key, Body=json.dumps(marker).encode())
    client.delete_object(Bucket=location.bucket, Key=location.key("archive", emptied, "data/voucher.xml"))
    client.put_object(  # a newer "catalog copy" without the marker a finished backup writes
        Bucket=location.bucket,
        Key=location.key("catalog", "catalog-99991231T000000.sqlite"),
        Body=b"not sqlite",
    )

    target = hub.home / "restore" / "here"
    back = cli("restore", s3_backup, str(target))
    assert back.returncode == 2 and "Traceback" not in back.stderr
    assert (
        f"{packages[2].parent.name} v1: not restored" in back.stderr
        and "is not a path inside a package" in back.stderr
    )
    assert f"{packages[5].parent.name} v1: not restored" in back.stderr and "not found" in back.stderr
    assert "10 package(s) restored" in back.stdout
    assert not list(hub.home.rglob("escaped.txt"))
    (copy,) = (target / "catalog").glob("catalog-*.sqlite")
    assert "99991231" not in copy.name  # the planted copy was passed over

    client.put_object(  # now a newer copy with a marker that does not fit its bytes
        Bucket=location.bucket,
        Key=location.key("catalog", "catalog-99991231T000000.sqlite.json"),
        Body=json.dumps({"sha256": "0" * 64, "sm3": "0" * 64, "size": 10}).encode(),
    )
    refused = cli("restore", s3_backup, str(hub.home / "other"))
    assert refused.returncode == 2 and "differs from its marker: not restored" in refused.stderr


def test_a_store_that_keeps_other_bytes_than_it_was_sent_holds_nothing_of_that_package(
    hub: Hub, s3_backup: str, s3_endpoint: str
) -> None:
    """The read-back is what catches it (moto, like some stores, does not check the ChecksumSHA256 it is sent):
    the package gets no marker and is named; every other package is held; the next run through an honest
    store sends it."""
    from tests.s3_server import CorruptingProxy

    seed(hub, vouchers=10, bad_records=False)
    run_sync("erp_sample", "run-1")
    victim = published_packages(hub.settings.archive_root)[6]
    rel = victim.relative_to(hub.settings.archive_root).as_posix()
    proxy = CorruptingProxy(s3_endpoint, f"{victim.parent.name}/v1/data/voucher.xml")
    try:
        out = cli("backup", s3_backup, env={"AWS_ENDPOINT_URL": proxy.url})
    finally:
        proxy.close()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (
        f"{victim.parent.name} v1: not backed up, the copy in {s3_backup} differs from what was sent"
        in out.stderr
    )
    # moto returns the checksum it was sent; botocore checks it against the bytes it reads back, so the read
    # fails before our own SHA-256/SM3 comparison (the line behind it, for stores that return none)
    assert "data/voucher.xml: cannot be read back:" in out.stderr and "did not match" in out.stderr, (
        out.stderr
    )
    assert "9 package(s) copied" in out.stdout
    location = S3Location.parse(s3_backup)
    markers = bucket_files(s3_endpoint, location, "committed")
    assert len(markers) == 9 and rel + ".json" not in markers
    again = cli("backup", s3_backup)
    assert (
        again.returncode == 0 and "1 package(s) copied" in again.stdout and "9 already there" in again.stdout
    )
