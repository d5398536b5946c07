"""The archive-hub command line, run as a real process."""

from __future__ import annotations

import json
import os
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

    items = [json.loads(line) for line in cli("quarantine", "list", "--json").stdout.splitlines()]
    assert len(items) == 5 and {i["stage"] for i in items} == {"map", "validate", "archive"}
    retry = cli("quarantine", "retry", "--source", "erp_sample")
    assert retry.returncode == 3 and "still quarantined 5" in retry.stdout  # nothing was fixed yet

    victim = published_packages(hub.settings.archive_root)[0] / "data" / "metadata.xml"
    victim.write_bytes(victim.read_bytes() + b"\n")
    broken = cli("verify")
    assert broken.returncode == 2
    assert "metadata.xml" in broken.stderr and "differs" in broken.stderr


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
