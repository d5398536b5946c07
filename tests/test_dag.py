"""The generated DAG, parsed and executed by Airflow 3 itself (`airflow dags test`), not mocked."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archive_hub.airflow_runner import run_airflow_dag
from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, QuarantineRow
from tests.conftest import Hub, override_erp_sample, seed


def airflow_db(hub: Hub) -> sqlite3.Connection:
    return sqlite3.connect(hub.home / "airflow" / "airflow.db")


def xcom_summary(hub: Hub, dag_id: str, task_id: str) -> dict:  # type: ignore[type-arg]
    """What a task passed on through XCom in its latest run (stored as JSON, possibly JSON in JSON)."""
    with airflow_db(hub) as db:
        (value,) = db.execute(
            "select value from xcom where dag_id=? and task_id=? and key='return_value' "
            "order by timestamp desc limit 1",
            (dag_id, task_id),
        ).fetchone()
    summary = json.loads(value) if isinstance(value, str) else value
    return json.loads(summary) if isinstance(summary, str) else summary


def test_dag_runs_for_real_and_passes_only_small_summaries(hub: Hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    # Map and archive fork their workers inside the Airflow task, whose SIGTERM handler the workers
    # inherit; once this hung the map task forever at pool shutdown (a timeout here fails the test).
    monkeypatch.setenv("ARCHIVE_HUB_PARALLEL_MIN_BYTES", "0")
    monkeypatch.setenv("ARCHIVE_HUB_WORKERS", "2")
    override_erp_sample(hub, monkeypatch, "batch_size: 500", "batch_size: 40")  # 3 archive batches
    seed(hub, vouchers=120)
    log = hub.home / "dag.log"
    rc = run_airflow_dag("archive_erp_sample", hub.settings, log, timeout=240)
    assert rc == 0, log.read_text()[-3000:]
    with airflow_db(hub) as db:
        runs = db.execute("select state from dag_run where dag_id='archive_erp_sample'").fetchall()
        tasks = dict(
            db.execute(
                "select task_id, state from task_instance where dag_id='archive_erp_sample'"
            ).fetchall()
        )
        xcoms = db.execute(
            "select task_id, value from xcom where dag_id='archive_erp_sample' and key='return_value'"
        ).fetchall()
        all_keys = {
            k for (k,) in db.execute("select distinct key from xcom where dag_id='archive_erp_sample'")
        }
    assert runs == [("success",)]
    assert tasks == {t: "success" for t in ("extract", "map", "validate", "archive", "finalize")}
    assert {t for t, _ in xcoms} == set(tasks) and all_keys == {"return_value"}
    for task_id, value in xcoms:
        size = len(value if isinstance(value, bytes | str) else json.dumps(value))
        assert size < 2048, f"XCom of {task_id} is {size} bytes: records must travel through files"
    summaries = {t: json.loads(v) for t, v in xcoms}
    summaries = {t: json.loads(v) if isinstance(v, str) else v for t, v in summaries.items()}
    assert summaries["map"]["workers"] == 2 and summaries["archive"]["workers"] == 2
    final = summaries["finalize"]  # Airflow stores the JSON as a JSON string
    assert final["archived"] == 120 and final["quarantined"] == 6 and final["status"] == "success"
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        assert s.execute(select(func.count(ArchiveRecordRow.id))).scalar_one() == 120
        assert s.execute(select(func.count(QuarantineRow.id))).scalar_one() == 6
    catalog.dispose()


def test_dag_fails_when_too_many_records_are_quarantined(hub: Hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    seed(hub, vouchers=20)  # 5 bad of 25 = 20% > 5%
    log = hub.home / "dag.log"
    run_airflow_dag("archive_erp_sample", hub.settings, log)
    with airflow_db(hub) as db:
        state = dict(
            db.execute(
                "select task_id, state from task_instance where dag_id='archive_erp_sample'"
            ).fetchall()
        )
        run_state = db.execute("select state from dag_run where dag_id='archive_erp_sample'").fetchone()[0]
    assert run_state == "failed"
    assert state["archive"] == "success" and state["finalize"] == "failed"
    assert "above the threshold of 5.0%" in log.read_text()


@pytest.mark.parametrize(
    "dag_file", ["archive_sources.py", "verify_archive.py", "backup_archive.py", "reconcile_bank.py"]
)
def test_dag_file_is_thin_at_parse_time(dag_file: str, tmp_path: Path) -> None:
    """Parsing a DAG file defines its DAGs without importing the heavy pipeline (GX, pandas, lxml, the
    verifier, the backup)."""
    import os
    import subprocess
    import sys

    code = (
        f"import sys, runpy; ns = runpy.run_path('dags/{dag_file}');"
        "heavy=[m for m in ('great_expectations','pandas','lxml','archive_hub.pipeline',"
        "'archive_hub.verification','archive_hub.backup','archive_hub.bank_reconciliation') if m in sys.modules];"
        "dags=[k for k, v in ns.items() if type(v).__name__ == 'DAG'];"
        "print(','.join(heavy) + '|' + ','.join(dags))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "ARCHIVE_HUB_BACKUP_DIR": str(tmp_path / "backup")},
        check=True,
    )
    heavy, dags = out.stdout.strip().split("|")
    assert heavy == "", f"parse time imported {heavy}"
    assert dags, f"dags/{dag_file} defined no DAG"


def test_verify_dag_passes_on_an_intact_archive_and_fails_naming_a_tampered_file(
    hub: Hub, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from archive_hub.pipeline import run_sync
    from archive_sink.filesystem import published_packages

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    seed(hub, vouchers=30, bad_records=False)
    run_sync("erp_sample", "run-1")
    log = hub.home / "verify.log"
    assert run_airflow_dag("verify_archive", hub.settings, log, timeout=240) == 0, log.read_text()[-3000:]
    summary = xcom_summary(hub, "verify_archive", "verify")
    assert summary["packages"] == 30 and summary["problems"] == 0 and summary["chain_ok"] is True

    package = published_packages(hub.settings.archive_root)[3]
    victim = package / "data" / "voucher.xml"
    victim.write_bytes(victim.read_bytes().replace(b"<", b" <", 1))
    assert run_airflow_dag("verify_archive", hub.settings, log, timeout=240) != 0
    with airflow_db(hub) as db:
        states = db.execute(
            "select state from task_instance where dag_id='verify_archive' order by start_date"
        ).fetchall()
    assert states[-1] == ("failed",)  # no retry can repair an archive
    text = log.read_text()
    assert "archive verification found 3 problem(s)" in text  # SHA-256, SM3 and the catalog all disagree
    assert f"{package.parent.name} v1: data/voucher.xml" in text


def test_backup_dag_backs_up_for_real_and_fails_naming_a_damaged_original(hub: Hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from archive_hub.pipeline import run_sync
    from archive_sink.filesystem import published_packages
    from connectors.erp.sample_erp.seed import touch_voucher

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    dest = hub.home / "backup"
    monkeypatch.setenv("ARCHIVE_HUB_BACKUP_DIR", str(dest))
    seed(hub, vouchers=30, bad_records=False)
    run_sync("erp_sample", "run-1")
    log = hub.home / "backup.log"
    assert run_airflow_dag("backup_archive", hub.settings, log, timeout=240) == 0, log.read_text()[-3000:]
    summary = xcom_summary(hub, "backup_archive", "backup")
    assert summary["copied"] == 30 and summary["problems"] == 0 and summary["catalog_copy"]
    assert len(published_packages(dest / "archive")) == 30

    touch_voucher(hub.erp_url, 3, new_summary="更正摘要")
    run_sync("erp_sample", "run-2")
    (new,) = [p for p in published_packages(hub.settings.archive_root) if p.name == "v2"]
    (new / "data" / "voucher.xml").write_bytes(b"<changed/>")
    assert run_airflow_dag("backup_archive", hub.settings, log, timeout=240) != 0
    text = log.read_text()
    assert "backup found" in text and f"{new.parent.name} v2: not backed up" in text
    assert not (dest / "archive" / new.relative_to(hub.settings.archive_root)).exists()


def test_reconcile_bank_dag_draws_up_each_month_end_once_and_fails_naming_a_table_that_does_not_balance(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.test_bank_reconciliation import synced

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    synced(hub)
    log = hub.home / "reconcile.log"
    config = hub.settings.bank_accounts_file.read_text(encoding="utf-8")
    wrong = tmp_path / "bank_accounts.yaml"
    wrong.write_text(config.replace('"3286415.62"', '"3286400.00"'), encoding="utf-8")
    with monkeypatch.context() as m:  # a wrong opening balance: every table is off by 15.62, none is kept
        m.setenv("ARCHIVE_HUB_BANK_ACCOUNTS", str(wrong))
        assert run_airflow_dag("reconcile_bank", hub.settings, log, timeout=240) != 0
    failed = log.read_text()
    for day in ("2025-01-31", "2025-02-28", "2025-03-31"):
        assert f"1102021209000456789 on {day}: not balanced (difference 15.62)" in failed

    assert run_airflow_dag("reconcile_bank", hub.settings, log, timeout=240) == 0, log.read_text()[-3000:]
    summary = xcom_summary(hub, "reconcile_bank", "reconcile")
    assert (summary["accounts"], summary["tables"], summary["balanced"]) == (1, 3, 3)
    assert summary["archived"] == {  # the statements run to March (April's file is cut off): three month ends
        f"银行存款余额调节表-1102021209000456789-{day}": f"J001-KJ·2025-D10-QT-000{n}"
        for n, day in ((5, "2025-01-31"), (6, "2025-02-28"), (7, "2025-03-31"))
    }
    table, workbook = map(Path, summary["reports"][-2:])
    report = json.loads(table.read_text(encoding="utf-8"))
    assert (report["account"], report["on"], report["balanced"]) == (
        "1102021209000456789",
        "2025-03-31",
        True,
    )
    assert workbook.suffix == ".xlsx" and workbook.parent == hub.home / "reports" / "bank"

    assert (
        run_airflow_dag("reconcile_bank", hub.settings, log, timeout=240) == 0
    )  # next month: nothing new yet
    again = xcom_summary(hub, "reconcile_bank", "reconcile")
    assert (again["tables"], again["archived"]) == (0, {})
