"""The archive-hub command line, run as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archive_sink.filesystem import published_packages
from tests.conftest import Hub, override_erp_sample, seed

ROOT = Path(__file__).parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archive_hub.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


def test_sync_verify_search_and_quarantine_commands(hub: Hub) -> None:
    seed(hub, vouchers=120)
    out = cli("sync", "erp_sample", "--run-id", "cli-test")
    assert out.returncode == 0, out.stderr
    assert "archived" in out.stdout and "120" in out.stdout

    verified = cli("verify")
    assert verified.returncode == 0, verified.stderr
    assert "packages 120" in verified.stdout and "all packages verified" in verified.stdout

    found = cli("search", "--voucher", "记-0001", "--year", "2025", "--json")
    rows = [json.loads(line) for line in found.stdout.splitlines()]
    assert rows and all(r["voucher_no"] == "记-0001" for r in rows)
    assert all(Path(r["package"]).is_dir() for r in rows)

    big = [
        json.loads(line)
        for line in cli("search", "--min", "50000", "--json", "--limit", "500").stdout.splitlines()
    ]
    assert big and all(float(r["amount"]) >= 50000 for r in big)
    code = rows[0]["archival_code"]
    by_code = [json.loads(line) for line in cli("search", "--code", code, "--json").stdout.splitlines()]
    assert [r["archival_code"] for r in by_code] == [code]
    text = [
        json.loads(line)
        for line in cli("search", "--text", "工资", "--json", "--limit", "500").stdout.splitlines()
    ]
    assert text and all("工资" in r["title"] or r["title"] for r in text)
    vouchers = [
        json.loads(x)
        for x in cli("search", "--category", "凭证", "--json", "--limit", "500").stdout.splitlines()
    ]
    assert len(vouchers) == 120 and all("-PZ-" in r["archival_code"] for r in vouchers)
    assert cli("search", "--category", "QT", "--json").stdout == ""  # no 其他会计资料 synced here
    assert cli("search", "--category", "XX").returncode == 2
    march = [
        json.loads(line)
        for line in cli(
            "search", "--from", "2025-03-01", "--to", "2025-03-31", "--json", "--limit", "500"
        ).stdout.splitlines()
    ]
    assert march and all("2025-03-01" <= r["date"] <= "2025-03-31" for r in march)
    assert len(march) == sum("2025-03-01" <= r["date"] <= "2025-03-31" for r in vouchers)
    assert cli("search", "--from", "March").returncode == 2
    narrow = cli("search", "--category", "PZ", "--limit", "2", env={"COLUMNS": "80"}).stdout.splitlines()
    assert narrow[0] == "2 record(s)" and len(narrow) == 5  # two lines a record: the title is never squeezed
    assert narrow[1].startswith(vouchers[0]["archival_code"]) and narrow[2].strip() == vouchers[0]["title"]

    # 保管期限 30年 for 2025 vouchers: due on the first day after 2055 ends, not a day before.
    assert cli("due", "--on", "2055-12-31", "--json").stdout.strip() == ""
    (due,) = [json.loads(line) for line in cli("due", "--on", "2056-01-01", "--json").stdout.splitlines()]
    assert (due["category"], due["retention"], due["records"], due["kept_years"]) == ("PZ", "30年", 120, 30)
    assert (due["first_item_no"], due["last_item_no"]) == (1, 120)
    assert "120 record(s) due for appraisal" in cli("due", "--on", "2060-06-30").stdout
    assert cli("due", "--on", "2056-02-30").returncode == 2

    (run,) = [
        json.loads(line) for line in cli("runs", "--source", "erp_sample", "--json").stdout.splitlines()
    ]
    assert (run["run_id"], run["status"], run["archived"], run["quarantined"]) == (
        "cli-test",
        "success",
        120,
        6,
    )
    assert "cli-test" in cli("runs").stdout
    listed = {r["source"]: r for r in map(json.loads, cli("sources", "--json").stdout.splitlines())}
    erp = listed["erp_sample"]
    assert (erp["kind"], erp["archived"], erp["open_quarantine"]) == ("erp.database", 120, 6)
    assert erp["last_run"]["run_id"] == "cli-test" and erp["cursor"]["changed_at"]
    assert listed["bank_inbox"]["archived"] == 0 and listed["bank_inbox"]["last_run"] is None

    items = [json.loads(line) for line in cli("quarantine", "list", "--json").stdout.splitlines()]
    assert len(items) == 6 and {i["stage"] for i in items} == {"map", "validate", "archive"}
    narrow = cli("quarantine", "list", env={"COLUMNS": "80"}).stdout.splitlines()
    assert narrow[0] == "6 open quarantine item(s)" and len(narrow) == 13  # two lines an item
    assert [line.strip() for line in narrow[2::2]] == [i["reason"] for i in items]  # each reason whole
    retry = cli("quarantine", "retry", "--source", "erp_sample")
    assert retry.returncode == 3 and "still quarantined 6" in retry.stdout  # nothing was fixed yet

    victim_dir, other_dir = published_packages(hub.settings.archive_root)[:2]
    victim = victim_dir / "data" / "metadata.xml"
    victim.write_bytes(victim.read_bytes() + b"\n")
    broken = cli("verify")
    assert broken.returncode == 2
    assert "metadata.xml" in broken.stderr and "differs" in broken.stderr
    # --code narrows the re-hash to the records whose 档号 starts with it; the chain is still checked whole.
    assert cli("verify", "--code", victim_dir.parent.name).returncode == 2
    other = cli("verify", "--code", other_dir.parent.name)
    assert other.returncode == 0 and f"档号 {other_dir.parent.name}*: packages 1," in other.stdout
    year = cli("verify", "--code", victim_dir.parent.name.rsplit("-", 1)[0])  # the whole class: 120 packages
    assert year.returncode == 2 and "packages 120," in year.stdout
    typo = cli("verify", "--code", "J001-KJ·1999")
    assert typo.returncode == 2 and "no archived record's 档号 starts with 'J001-KJ·1999'" in typo.stderr


def test_secrets_never_reach_errors_or_the_catalog(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "S3cr3t-Pa55-XYZ"
    sources = override_erp_sample(
        hub,
        monkeypatch,
        'url: "sqlite:///${ARCHIVE_HUB_HOME}/sample_erp/erp.sqlite"',
        'url: "postgresql+psycopg://erp_reader:${ERP_DB_PASSWORD}@127.0.0.1:9/erp?sslpassword=${ERP_DB_PASSWORD}"',
    )
    env = {"ARCHIVE_HUB_SOURCES_DIR": str(sources), "ERP_DB_PASSWORD": secret}
    out = cli("sync", "erp_sample", env=env)
    assert out.returncode == 1
    assert "setting 'connection.url'" in out.stderr and "***" in out.stderr
    assert secret not in out.stdout + out.stderr
    for path in hub.home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"secret leaked into {path}"


def test_a_quoted_url_or_secret_parameter_is_redacted_before_it_is_stored() -> None:
    from archive_hub.settings import redact_text

    said = (
        "connect postgresql+psycopg://u:Hunter2@h:5/db?sslpassword=abc&x=1 password=zz api_key=k1 monkey=ok"
    )
    assert redact_text(said) == (
        "connect postgresql+psycopg://u:***@h:5/db?sslpassword=***&x=1 password=*** api_key=*** monkey=ok"
    )


def test_unknown_source_is_a_clear_config_error(hub: Hub) -> None:
    out = cli("sync", "no_such_erp")
    assert out.returncode == 1
    assert "no config/sources/no_such_erp.yaml" in out.stderr and "erp_sample" in out.stderr
    assert "Traceback" not in out.stderr


def test_expected_failures_are_one_line_never_a_traceback(hub: Hub) -> None:
    cases = [
        (("reconcile", "nosuch"), "no config/sources/nosuch.yaml", {}),
        (("quarantine", "list", "--source", "nosuch"), "no config/sources/nosuch.yaml", {}),
        (("quarantine", "retry", "--source", "erp_sample", "9999"), "no open quarantine item 9999", {}),
        (("search", "--min", "abc"), "is not an amount", {}),
        (("show", "J001-KJ·2025-D30-PZ-9999"), "no record with 档号 'J001-KJ·2025-D30-PZ-9999'", {}),
        (
            ("verify",),
            "catalog postgresql+psycopg://reader:***@127.0.0.1:9/x",
            {"ARCHIVE_HUB_CATALOG_URL": "postgresql+psycopg://reader:Hunter2secret@127.0.0.1:9/x"},
        ),
    ]
    for args, message, env in cases:
        out = cli(*args, env=env)
        assert out.returncode == 2, (args, out.returncode, out.stderr[-500:])
        assert message in out.stderr.replace("\n", ""), (args, out.stderr)
        assert "Traceback" not in out.stderr and "Hunter2secret" not in out.stderr


def test_an_error_naming_a_long_path_stays_on_one_line(hub: Hub) -> None:
    """A path broken over two lines cannot be copied (seen: a test's long temp path split the reason)."""
    deep = hub.home / ("x" * 120) / "no-backup-here"
    out = cli("restore", str(deep), str(hub.home / "r2"), env={"COLUMNS": "80"})
    assert out.returncode == 2
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert str(deep) in line and "not a backup" in line


def voucher_7_in_two_versions(hub: Hub, run_prefix: str) -> str:
    """Sync 40 vouchers (each with an attachment), change voucher 7 in the ERP, sync again: its 档号."""
    from sqlalchemy import select

    from archive_hub.catalog import Catalog
    from archive_hub.catalog.models import ArchiveRecordRow
    from connectors.erp.sample_erp.seed import touch_voucher

    seed(hub, vouchers=40, bad_records=False, attachment_every=1)
    assert cli("sync", "erp_sample", "--run-id", f"{run_prefix}-1").returncode == 0
    touch_voucher(hub.erp_url, 7, new_summary="更正摘要：补充发票")
    assert cli("sync", "erp_sample", "--run-id", f"{run_prefix}-2").returncode == 0
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        code = s.execute(
            select(ArchiveRecordRow.archival_code).where(ArchiveRecordRow.business_id == "7")
        ).scalar_one()
    catalog.dispose()
    return code


def test_show_gives_one_record_with_its_versions_files_events_and_verifies_it(hub: Hub) -> None:
    code = voucher_7_in_two_versions(hub, "show")

    out = cli("show", code, "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["archival_code"] == code and body["source"] == "erp_sample:7"
    assert body["current_version"] == 2 and "更正摘要" in body["title"]  # the record shows the new version
    assert [(v["version"], v["previous_version"]) for v in body["versions"]] == [(1, None), (2, 1)]
    assert [v["run_id"] for v in body["versions"]] == ["show-1", "show-2"]
    assert [e["kind"] for e in body["events"]] == ["archived", "new-version", "consulted"]  # this show: 查阅
    for v in body["versions"]:  # what the catalog says is what lies on disk, file by file
        package = hub.settings.archive_root / v["path"]
        on_disk = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
        assert sorted(f["path"] for f in v["files"]) == on_disk
        assert any(f["role"] == "attachment" for f in v["files"])
        for f in v["files"]:
            data = (package / f["path"]).read_bytes()
            assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
            assert f["sm3"] == hashlib.new("sm3", data).hexdigest()

    text = cli("show", code, env={"COLUMNS": "80"})
    assert text.returncode == 0, text.stderr
    voucher_xml = next(f for f in body["versions"][1]["files"] if f["path"] == "data/voucher.xml")
    assert f"SHA-256 {voucher_xml['sha256']}" in text.stdout  # whole, on one line, even on 80 columns
    assert code in text.stdout and "30年, 到期 2056-01-01" in text.stdout

    checked = cli("show", code, "--verify")
    assert checked.returncode == 0, checked.stderr
    assert "verified: 2 version(s)" in checked.stdout
    *_, last, consulted = json.loads(cli("show", code, "--json").stdout)["events"]
    assert last["kind"] == "verified" and last["detail"]["ok"] is True
    assert consulted["kind"] == "consulted" and consulted["detail"]["by"]  # the check itself is on record

    old = hub.settings.archive_root / body["versions"][0]["path"] / "data" / "voucher.xml"
    old.write_bytes(old.read_bytes().replace(b"<", b" <", 1))  # history tampered with
    broken = cli("show", code, "--verify")
    assert broken.returncode == 2
    assert f"{code} v1: data/voucher.xml" in broken.stderr.replace("\n", "")
    *_, last, _consulted = json.loads(cli("show", code, "--json").stdout)["events"]
    assert last["kind"] == "verified" and last["detail"]["ok"] is False


def test_check_names_what_is_wrong_with_a_source_before_its_first_sync(hub: Hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seed(hub, vouchers=40)  # and the sample's 6 broken vouchers
    out = cli("check", "erp_sample", "--sample", "100", "--show-record")
    assert out.returncode == 3, out.stderr
    assert "configuration and connection ok (erp.database)" in out.stdout
    assert "42 of the first 46 record(s) map and pass the quality gate" in out.stdout
    errors = out.stderr.replace("\n", " ")
    for reason in ("cannot read '2025-13-45'", "account_code: required value is missing", "is not balanced"):
        assert reason in errors, reason
    assert "already used by source record" in errors  # the gate runs too, not only the mapping
    assert '"fonds_no": "J001"' in out.stdout  # --show-record: the first record as it would be archived
    assert not (hub.home / "catalog.sqlite").exists() and not hub.settings.archive_root.exists()  # reads only

    (hub.home / "sample_erp" / "erp.sqlite").unlink()
    seed(hub, vouchers=40, bad_records=False)  # an ERP without the broken vouchers
    fixed = cli("check", "erp_sample", "--sample", "10")
    assert fixed.returncode == 0 and "10 of the first 10 record(s)" in fixed.stdout, fixed.stderr

    override_erp_sample(hub, monkeypatch, "mappings/erp_sample_voucher.yaml", "mappings/no_such_mapping.yaml")
    broken = cli("check", "erp_sample")
    assert broken.returncode == 2 and "no_such_mapping.yaml" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_copy_hands_out_a_verified_registered_copy_and_refuses_a_damaged_original(hub: Hub) -> None:
    import bagit

    code = voucher_7_in_two_versions(hub, "c")
    original = hub.settings.archive_root / "J001" / "2025" / "PZ" / code / "v2"
    auditor = {"ARCHIVE_HUB_USER": "auditor-li"}

    out = cli("copy", code, str(hub.home / "out"), "--purpose", "2025年度审计取证", env=auditor)
    assert out.returncode == 0, out.stderr
    copy = hub.home / "out" / f"{code}-v2"
    files = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
    assert all((copy / f).read_bytes() == (original / f).read_bytes() for f in files)
    bagit.Bag(str(copy)).validate()  # a valid bag on its own, away from the archive
    *_, copied, consulted = json.loads(cli("show", code, "--json").stdout)["events"]
    assert copied["kind"] == "copied" and consulted["kind"] == "consulted"
    assert copied["detail"] | {"destination": None} == {
        "version": 2,
        "destination": None,
        "purpose": "2025年度审计取证",
        "by": "auditor-li",
        "files": len(files),
        "bytes": sum((original / f).stat().st_size for f in files),
    }

    both = cli("copy", code, str(hub.home / "all"), "--purpose", "调阅", "--all-versions")
    assert both.returncode == 0 and sorted(p.name for p in (hub.home / "all").iterdir()) == [
        f"{code}-v1",
        f"{code}-v2",
    ]
    again = cli("copy", code, str(hub.home / "out"), "--purpose", "再次取证")
    assert again.returncode == 2 and "exists already" in again.stderr
    assert cli("copy", code, str(hub.home / "x")).returncode == 2  # no purpose, no copy

    voucher = original / "data" / "voucher.xml"
    voucher.write_bytes(voucher.read_bytes().replace(b"<", b" <", 1))
    refused = cli("copy", code, str(hub.home / "damaged"), "--purpose", "审计取证")
    assert refused.returncode == 2
    assert "does not match the catalog" in refused.stderr and "data/voucher.xml" in refused.stderr
    assert list((hub.home / "damaged").iterdir()) == []  # nothing handed out, no partial copy left
    shutil.rmtree(original.parent / "v1")  # an original gone from the disk: one clear line, no copy
    gone = cli("copy", code, str(hub.home / "gone"), "--purpose", "审计取证", "--all-versions")
    assert gone.returncode == 2 and "cannot copy to" in gone.stderr and "Traceback" not in gone.stderr
    assert list((hub.home / "gone").iterdir()) == []
    kinds = [e["kind"] for e in json.loads(cli("show", code, "--json").stdout)["events"]]
    assert kinds.count("copied") == 3  # v2, then v1 + v2; no refusal was registered as a copy


def test_inventory_lists_every_archived_record_by_class_as_register_workbook_and_json(hub: Hub) -> None:
    """保管清册 + 归档文件目录: drawn from the catalog, in 档号 order, each 件 once in its current version."""
    from decimal import Decimal

    import openpyxl
    from sqlalchemy import create_engine, text

    from connectors.erp.sample_erp.seed import touch_voucher

    seed(hub, vouchers=120)
    assert cli("sync", "erp_sample", "--run-id", "inv-1").returncode == 0
    touch_voucher(hub.erp_url, 7, new_summary="补充附件后重新导出")
    assert cli("sync", "erp_sample", "--run-id", "inv-2").returncode == 0
    engine = create_engine(hub.settings.catalog_url)
    with engine.begin() as conn:  # a foreign-currency 件: the class's amounts can no longer be summed
        conn.execute(text("update archive_record set currency = 'USD' where item_no = 2"))
        catalog = {
            code: (version, Decimal(str(amount)))
            for code, version, amount in conn.execute(
                text("select archival_code, current_version, amount_total from archive_record")
            )
        }
    engine.dispose()

    rows = [json.loads(line) for line in cli("inventory", "--json").stdout.splitlines()]
    assert [r["archival_code"] for r in rows] == sorted(catalog)  # every 件 once, in 档号 order
    assert {r["archival_code"]: (r["version"], Decimal(r["amount_total"])) for r in rows} == catalog
    assert [r["item_no"] for r in rows] == list(range(1, len(rows) + 1))
    assert sorted({r["version"] for r in rows}) == [1, 2]  # voucher 7 is listed once, in its new version
    assert all(r["attachments"] == r["files"] - 7 for r in rows)  # 7 = voucher, metadata and 5 tag files

    workbook = hub.home / "目录.xlsx"
    out = cli("inventory", "--xlsx", str(workbook))
    assert out.returncode == 0, out.stderr
    label = rows[0]["class"]
    assert label in out.stdout and f"workbook: {workbook}" in out.stdout
    book = openpyxl.load_workbook(workbook, read_only=True)
    assert book.sheetnames == ["保管清册", label]
    register = list(book["保管清册"].iter_rows(values_only=True))
    header = register.index(next(r for r in register if r and r[0] == "类"))
    line = dict(zip(register[header], register[header + 1], strict=False))
    assert line["件数"] == len(rows) and line["起止件号"] == f"0001–{len(rows):04d}"
    assert line["金额合计"] is None and line["币种"].startswith("多币种")
    listed = list(book[label].iter_rows(values_only=True))[2:]
    assert [r[1] for r in listed] == [r["archival_code"] for r in rows]
    assert not list(hub.home.glob(".*.partial"))

    assert cli("inventory", "--code", label).returncode == 0
    nothing = cli("inventory", "--code", "J999")
    assert nothing.returncode == 1 and "no archived record has a 档号 starting with 'J999'" in nothing.stderr
    nowhere = cli("inventory", "--xlsx", str(hub.home / "no" / "dir" / "x.xlsx"))
    assert nowhere.returncode == 2 and "cannot write the workbook" in nowhere.stderr


def test_sync_full_finds_an_edit_the_cursor_cannot_see_and_archives_nothing_twice(hub: Hub) -> None:
    """An ERP that writes an old change time (a voucher edited in a closed period, a clock set back): the
    incremental read misses it; `sync --full` reads the source whole and archives only the new version."""
    import sqlite3

    seed(hub, vouchers=150)
    first = cli("sync", "erp_sample", "--run-id", "full-1")
    assert first.returncode == 0, first.stderr + first.stdout
    path = hub.erp_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as erp:
        (oldest,) = erp.execute("SELECT min(updated_at) FROM erp_voucher").fetchone()
        (vid,) = erp.execute(
            "SELECT id FROM erp_voucher WHERE status != 'draft' ORDER BY id LIMIT 1"
        ).fetchone()
        erp.execute("UPDATE erp_voucher SET summary = '更正摘要', updated_at = ? WHERE id = ?", (oldest, vid))
    missed = cli("sync", "erp_sample", "--run-id", "full-2")
    assert missed.returncode == 0, missed.stderr
    full = cli("sync", "erp_sample", "--run-id", "full-3", "--full")
    assert full.returncode == 0, full.stderr
    summaries = {
        run: json.loads((hub.home / "runs" / "erp_sample" / run / "extract.json").read_text())
        for run in ("full-2", "full-3")
    }
    assert summaries["full-3"]["from_start"] and summaries["full-3"]["records"] >= 150
    assert summaries["full-2"]["records"] < summaries["full-3"]["records"]
    found = cli("search", "--text", "更正摘要", "--json").stdout.splitlines()
    assert len(found) == 1 and json.loads(found[0])["version"] == 2, found
    archived = json.loads((hub.home / "runs" / "erp_sample" / "full-3" / "archive.json").read_text())
    assert archived["archived"] == 0 and archived["new_versions"] == 1
    again = cli("sync", "erp_sample", "--run-id", "full-4", "--full")
    assert again.returncode == 0, again.stderr
    archived = json.loads((hub.home / "runs" / "erp_sample" / "full-4" / "archive.json").read_text())
    assert archived["archived"] == 0 and archived["new_versions"] == 0
