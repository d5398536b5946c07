"""OA approvals end to end: WeCom (a real peer process) → callbacks to the real receiver process → the
approval inbox → archive run → `oa reconcile` against the archived sample books, then the DAG under Airflow.

The sample approvals are written from the seeded sample ERP with one exception of each kind
(connectors/oa/sample_wecom.py); the test checks the reconciliation finds exactly those.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import verify_chain
from archive_hub.catalog.models import ArchiveRecordRow, EventRow, QuarantineRow
from archive_hub.demo_oa import deliver_callbacks, running_wecom, sample_dir, wecom_env
from archive_hub.pipeline.runner import run_sync
from connectors.oa.sample_wecom import write_sample_wecom
from tests.conftest import Hub, seed
from tests.test_cli import cli


def _codes(catalog: Catalog, source_id: str) -> dict[str, str]:
    with catalog.reading() as s:
        return dict(
            s.execute(
                select(ArchiveRecordRow.business_id, ArchiveRecordRow.archival_code).where(
                    ArchiveRecordRow.source_id == source_id
                )
            ).all()
        )


def test_approvals_archived_from_callbacks_and_paired_with_their_vouchers(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(hub, vouchers=600)
    sample = write_sample_wecom(hub.erp_url, sample_dir(hub.settings))
    assert sample.approvals > 40, sample  # enough for one exception of each kind
    for name in ("WECOM_CORP_ID", "WECOM_SECRET", "WECOM_CALLBACK_TOKEN", "WECOM_CALLBACK_AES_KEY"):
        monkeypatch.delenv(name, raising=False)
    env = wecom_env(hub.settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WECOM_API_URL", raising=False)

    assert run_sync("erp_sample", "erp-1")["status"] == "success"
    with running_wecom(hub.settings) as (peer_url, receiver_url):
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        delivered = deliver_callbacks(hub.settings, receiver_url, "wecom_approvals")
        assert delivered.sent == 2 * sample.approvals and delivered.kept == delivered.sent
        assert delivered.refused_forgery
        first = run_sync("wecom_approvals", "oa-1")
        again = run_sync("wecom_approvals", "oa-2")  # the look-back re-reads the newest: nothing new
    ex = sample.exceptions
    rejected, lost = ex["rejected (not archived)"], ex["invoice file missing at WeCom"]
    assert first["archived"] == sample.approvals - 2 and first["quarantined"] == 1
    assert again["archived"] == 0 and again["new_versions"] == 0

    catalog = Catalog(hub.settings.catalog_url)
    approvals = _codes(catalog, "wecom_approvals")
    assert rejected not in approvals and lost not in approvals
    with catalog.reading() as s:
        (item,) = s.scalars(select(QuarantineRow).where(QuarantineRow.source_id == "wecom_approvals")).all()
    assert item.business_id == lost and "发票" in item.reason and "invalid media_id" in item.reason
    refused = list((hub.home / "quarantine" / "wecom_approvals" / "callbacks").iterdir())
    assert len(refused) == 1 and "signature mismatch" in refused[0].read_text()

    # The package holds WeCom's answer and the invoice as sent; the 数电票 is claimed (booked once).
    code = approvals[ex["approved, never booked"]]
    shown = json.loads(cli("show", code, "--json").stdout)
    paths = [f["path"] for f in shown["versions"][0]["files"]]
    assert "data/attachments/01-审批单.json" in paths and any(p.endswith(".ofd") for p in paths)
    assert shown["retention"] == "30年" and len(shown["invoices"]) == 1

    out = cli("oa", "reconcile", "--json")
    assert out.returncode == 0, out.stderr
    (report,) = json.loads(out.stdout)
    vouchers = _codes(catalog, "erp_sample")
    unbooked = {u["审批单号"] for u in report["unbooked"]}
    unapproved = {u["档号"] for u in report["unapproved"]}
    missing_voucher = vouchers[ex["voucher without approval"].removeprefix("erp voucher ")]
    assert {ex["approved, never booked"], ex["amount differs from the books"]} <= unbooked
    assert missing_voucher in unapproved
    assert report["matched"] == report["linked_now"] == report["approvals"] - len(unbooked)
    assert report["matched"] >= sample.approvals - 6 and not report["problems"]

    # A pair is named from both sides, and reconciling again links nothing twice.
    pairs = [a for a in approvals.values() if a not in {approvals[n] for n in unbooked}]
    shown = json.loads(cli("show", pairs[0], "--json").stdout)
    (link,) = shown["links"]
    assert link["relation"] == "入账凭证" and "金额" in link["basis"]
    back = json.loads(cli("show", link["archival_code"], "--json").stdout)
    assert {"relation": "审批单", "archival_code": pairs[0], "basis": link["basis"]} in back["links"]
    (report,) = json.loads(cli("oa", "reconcile", "--json").stdout)
    assert report["linked_now"] == 0 and report["matched"] == len(pairs)
    with catalog.reading() as s:
        linked = s.scalars(select(EventRow).where(EventRow.kind == "approval-linked")).all()
        assert len(linked) == len(pairs)
        assert verify_chain(s).ok
    catalog.dispose()


def test_approval_dag_runs_under_airflow_and_keeps_secrets_out(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_hub.airflow_runner import run_airflow_dag

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    seed(hub, vouchers=200)
    write_sample_wecom(hub.erp_url, sample_dir(hub.settings))
    env = wecom_env(hub.settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with running_wecom(hub.settings) as (peer_url, receiver_url):
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        deliver_callbacks(hub.settings, receiver_url, "wecom_approvals")
        log = hub.home / "dag.log"
        rc = run_airflow_dag("archive_wecom_approvals", hub.settings, log, timeout=240)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    with sqlite3.connect(hub.home / "airflow" / "airflow.db") as db:
        states = dict(
            db.execute("select task_id, state from task_instance where dag_id='archive_wecom_approvals'")
        )
        xcoms = dict(db.execute("select task_id, value from xcom where dag_id='archive_wecom_approvals'"))
    assert states == {t: "success" for t in ("extract", "map", "validate", "archive", "finalize")}
    final = json.loads(xcoms["finalize"])
    final = json.loads(final) if isinstance(final, str) else final
    catalog = Catalog(hub.settings.catalog_url)
    assert final["archived"] == len(_codes(catalog, "wecom_approvals")) > 10
    catalog.dispose()

    # The daily reconcile_approvals DAG pairs them with the books (archived here by a plain sync).
    assert run_sync("erp_sample", "erp-1")["status"] == "success"
    rc = run_airflow_dag("reconcile_approvals", hub.settings, hub.home / "reconcile.log", timeout=240)
    assert rc == 0, (hub.home / "reconcile.log").read_text()[-3000:]
    with sqlite3.connect(hub.home / "airflow" / "airflow.db") as db:
        (value,) = db.execute("select value from xcom where dag_id='reconcile_approvals'").fetchone()
    summary = json.loads(value)
    summary = (json.loads(summary) if isinstance(summary, str) else summary)["wecom_approvals"]
    assert summary["approvals"] == final["archived"] and summary["linked_now"] == summary["matched"] > 10
    report = json.loads(Path(summary["report"]).read_text(encoding="utf-8"))
    assert len(report["unbooked"]) == summary["unbooked"] == summary["approvals"] - summary["matched"]
    secrets = [env["WECOM_SECRET"], env["WECOM_CALLBACK_TOKEN"], env["WECOM_CALLBACK_AES_KEY"]]
    places: list[tuple[str, bytes]] = [("airflow log", text.encode()), ("xcom", repr(xcoms).encode())]
    places.append(("catalog", (hub.home / "catalog.sqlite").read_bytes()))
    places += [(str(p), p.read_bytes()) for p in (hub.home / "runs").rglob("*") if p.is_file()]
    places += [(str(p), p.read_bytes()) for p in (hub.home / "logs").rglob("*.log")]
    for secret in secrets:
        for where, data in places:
            assert secret.encode() not in data, f"a secret is in {where}"
    assert Path(hub.home / "sample_wecom" / "secrets.env").stat().st_mode & 0o077 == 0
