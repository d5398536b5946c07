"""Generates one Airflow 3 DAG per source configuration file (Task SDK, TaskFlow).

Parse time only reads the small YAML files; everything heavy is imported inside the tasks. Tasks
pass each other only the run id and small JSON summaries through XCom: records travel through the
run directory. State (cursor, quarantine, 档号) lives in the hub's catalog, so asset-triggered or
manual runs, which have no data interval, behave exactly like scheduled ones.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any, NoReturn

from airflow.sdk import Param, dag, get_current_context, task

from archive_hub.settings import Settings
from archive_hub.sources import SourceConfig, load_source, source_files

DEFAULT_ARGS = {"retries": 2, "retry_delay": dt.timedelta(seconds=30), "retry_exponential_backoff": True}


def _run(step: str, source_id: str) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException

    from archive_hub.pipeline.finalize import QuarantineThresholdError, RunIntegrityError
    from archive_hub.pipeline.runner import run_step
    from connectors.errors import ConfigError, RecordError, SourceError
    from mappings import MappingConfigError

    context = get_current_context()
    full = step == "extract" and bool((context.get("params") or {}).get("full"))
    try:
        return run_step(step, source_id, context["run_id"], from_start=full)
    except (
        ConfigError,
        MappingConfigError,
        QuarantineThresholdError,
        RunIntegrityError,
        RecordError,
        SourceError,
    ) as exc:
        # Retrying cannot fix these: fail now with the message that names the setting or record.
        raise AirflowFailException(str(exc)) from None


def build_dag(config: SourceConfig) -> Any:
    source_id = config.id

    @dag(
        dag_id=f"archive_{source_id}",
        description=config.description or f"archive {source_id}",
        schedule=config.schedule or None,  # an empty schedule (an OA source not yet set up): on demand only
        start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["archive-hub", config.kind],
        doc_md=f"Archives `{source_id}` ({config.kind}) through extract → map → validate → archive → finalize. "
        "Trigger with `full: true` to read the source whole rather than from its cursor (as `sync --full`).",
        params={
            "full": Param(
                False,
                type="boolean",
                description="read the source whole, not from its cursor; nothing is archived twice",
            )
        },
    )
    def archive_source() -> None:
        @task(task_id="extract", multiple_outputs=False)
        def extract() -> dict[str, Any]:
            return _run("extract", source_id)

        @task(task_id="map", multiple_outputs=False)
        def map_records(_: dict[str, Any]) -> dict[str, Any]:
            return _run("map", source_id)

        @task(task_id="validate", multiple_outputs=False)
        def validate(_: dict[str, Any]) -> dict[str, Any]:
            return _run("validate", source_id)

        @task(task_id="archive", multiple_outputs=False)
        def archive(_: dict[str, Any]) -> dict[str, Any]:
            return _run("archive", source_id)

        @task(task_id="finalize", retries=0, multiple_outputs=False)
        def finalize(_: dict[str, Any]) -> dict[str, Any]:
            return _run("finalize", source_id)

        finalize(archive(validate(map_records(extract()))))

    return archive_source()


def _fail_naming(what: str, problems: list[str]) -> NoReturn:
    """Retrying cannot repair an archive: fail at once, without retries, naming the first problems."""
    from airflow.sdk.exceptions import AirflowFailException

    shown = "\n".join(problems[:20])
    more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise AirflowFailException(f"{what} found {len(problems)} problem(s):\n{shown}{more}")


def _maintenance_dag(
    dag_id: str, task_id: str, work: Callable[[], dict[str, Any]], schedule: str, description: str, doc: str
) -> Any:
    """A one-task DAG over the whole archive (verify, backup): one run at a time, no catch-up, no retries."""

    @dag(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=["archive-hub", task_id],
        doc_md=doc,
    )
    def maintenance() -> None:
        @task(task_id=task_id, retries=0, multiple_outputs=False)  # XCom: one small summary
        def run() -> dict[str, Any]:
            return work()

        run()

    return maintenance()


def verify_summary() -> dict[str, Any]:
    """Re-hash the whole archive and check the event chain (检测); raise with the first problems if any."""
    from archive_hub.catalog import Catalog
    from archive_hub.verification import verify_archive

    settings = Settings.from_env()
    catalog = Catalog(settings.catalog_url)
    try:
        catalog.create_schema()
        report = verify_archive(catalog, settings.archive_root, staging_root=settings.staging_root)
    finally:
        catalog.dispose()
    summary = {
        "packages": report.packages,
        "files": report.files,
        "bytes": report.bytes,
        "events": report.events,
        "chain_ok": report.chain_ok,
        "problems": len(report.problems),
    }
    if not report.ok:  # the whole list: `archive-hub verify`
        _fail_naming("archive verification", report.problems)
    return summary


def build_verify_dag(schedule: str | None = None) -> Any:
    """The periodic 检测 of the whole archive: every package re-hashed, the event chain checked, logged."""
    return _maintenance_dag(
        "verify_archive",
        "verify",
        verify_summary,
        schedule or os.environ.get("ARCHIVE_HUB_VERIFY_SCHEDULE", "@daily"),
        "re-hash every archive package (SHA-256 + SM3) against manifests and catalog; check the event chain",
        "Fails, naming the packages and files, when anything in the archive or its event log changed.",
    )


def backup_summary(destination: str) -> dict[str, Any]:
    """One backup run (备份, archive_hub/backup.py) to a folder or s3://bucket/prefix; raise naming the first
    problems if any."""
    from archive_hub.backup import backup
    from archive_hub.catalog import Catalog

    settings = Settings.from_env()
    catalog = Catalog(settings.catalog_url)
    try:
        catalog.create_schema()
        report = backup(catalog, settings.archive_root, destination)
    finally:
        catalog.dispose()
    summary = {
        "copied": report.copied,
        "present": report.present,
        "bytes": report.bytes,
        "catalog_copy": report.catalog_copy,
        "problems": len(report.problems),
    }
    if not report.ok:
        _fail_naming("backup", report.problems)
    return summary


def build_backup_dag(destination: str | None = None, schedule: str | None = None) -> Any:
    """The scheduled 备份 to ARCHIVE_HUB_BACKUP_DIR (a folder or s3://bucket/prefix); no DAG at all while no
    backup is configured."""
    folder = destination or os.environ.get("ARCHIVE_HUB_BACKUP_DIR")
    if not folder:
        return None
    return _maintenance_dag(
        "backup_archive",
        "backup",
        lambda: backup_summary(folder),
        schedule or os.environ.get("ARCHIVE_HUB_BACKUP_SCHEDULE", "@daily"),
        "copy new archive packages (each verified) and the catalog to the backup folder",
        "Fails, naming each package, when an original no longer matches the catalog (it is then not copied).",
    )


def reconcile_bank_summary() -> dict[str, Any]:
    """银行存款余额调节表 of every configured account for each month end its statements cover and no kept
    table has yet (so months missed while the DAG did not run are caught up), written under
    ARCHIVE_HUB_HOME/reports/bank/ (JSON and workbook); each balanced one is kept and archived as a record
    (附表一: 10年) through the registers source. Raise naming each table that does not balance."""
    import json

    from archive_hub.bank_accounts import load_bank_accounts
    from archive_hub.bank_reconciliation import default_day, month_ends, reconcile_bank
    from archive_hub.bank_reconciliation_record import keep, kept_days
    from archive_hub.bank_reconciliation_view import write_xlsx
    from archive_hub.catalog import Catalog
    from archive_hub.registers import archive_registers
    from archive_sink.durability import replace_file

    settings = Settings.from_env()
    folder = settings.home / "reports" / "bank"
    folder.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings.catalog_url)
    problems: list[str] = []
    written: list[str] = []
    accounts = tables = balanced = 0
    kept: list[Any] = []
    archived: dict[str, str | None] = {}
    try:
        catalog.create_schema()
        with catalog.reading() as session:
            for acct in load_bank_accounts(settings):
                accounts += 1
                last = default_day(session, acct)
                if last is None:
                    problems.append(f"{acct.account}: no archived statement yet")
                    continue
                done = kept_days(session, acct.account)
                for day in (d for d in month_ends(acct, last) if d not in done):
                    report = reconcile_bank(session, acct, day, settings)
                    tables += 1
                    stem = folder / f"银行存款余额调节表-{acct.account}-{day}"
                    data = json.dumps(report.as_dict(), ensure_ascii=False, indent=2).encode()
                    replace_file(stem.with_suffix(".json"), data)
                    written += [
                        str(stem.with_suffix(".json")),
                        str(write_xlsx([report], stem.with_suffix(".xlsx"))),
                    ]
                    if report.balanced:
                        balanced += 1
                        kept.append(report)
                    else:
                        difference = "unknown" if report.difference is None else f"{report.difference:.2f}"
                        problems += [f"{acct.account} on {day}: not balanced (difference {difference})"]
                        problems += [f"{acct.account} on {day}: {p}" for p in report.problems]
        keys = []
        for report in kept:
            with catalog.transaction() as session:
                keys.append(keep(session, report, "reconcile_bank DAG"))
        if keys:
            archived = archive_registers(catalog, keys)
    finally:
        catalog.dispose()
    if problems:
        _fail_naming("bank reconciliation", problems)
    return {
        "accounts": accounts,
        "tables": tables,
        "balanced": balanced,
        "reports": written,
        "archived": archived,
    }


def build_reconcile_bank_dag(schedule: str | None = None) -> Any:
    """The monthly 银行存款余额调节表 for the auditor; no DAG while config/bank_accounts.yaml is absent."""
    if not Settings.from_env().bank_accounts_file.exists():
        return None
    return _maintenance_dag(
        "reconcile_bank",
        "reconcile",
        reconcile_bank_summary,
        schedule or os.environ.get("ARCHIVE_HUB_BANK_RECONCILE_SCHEDULE", "@monthly"),
        "银行存款余额调节表: archived bank statements against archived vouchers, every configured account",
        "Draws up the table of every month end the statements cover that has none kept yet, writes it (JSON and "
        "workbook) under reports/bank/ and archives it (10年); fails naming each table that does not balance.",
    )


def reconcile_approvals_summary() -> dict[str, Any]:
    """审批单 ↔ 记账凭证 for every scope in config/approval_reconciliation.yaml: pair archived approvals with
    archived vouchers, keep the new pairs, write the report under reports/approvals/. The findings
    (已审批未入账, 无审批的报销凭证) are the report's business, not a failure; a voucher that cannot be read or
    no longer matches its hash is, and is named."""
    from archive_hub.approvals import load_scopes, reconcile_approvals, write_report
    from archive_hub.catalog import Catalog

    settings = Settings.from_env()
    catalog = Catalog(settings.catalog_url)
    out: dict[str, Any] = {}
    problems: list[str] = []
    try:
        catalog.create_schema()
        for scope in load_scopes(settings):
            with catalog.transaction() as session:
                r = reconcile_approvals(session, scope, settings)
            out[f"{scope.source}:{scope.books}"] = {
                "approvals": len(r.approvals),
                "matched": len(r.matched),
                "linked_now": sum(a.new for a in r.approvals),
                "unbooked": len(r.unbooked),
                "unapproved": len(r.unapproved),
                "revoked": len(r.revoked),
                "report": str(write_report(r, settings)),
            }
            problems += [f"{scope.source}: {p}" for p in r.problems]
    finally:
        catalog.dispose()
    if problems:
        _fail_naming("approval reconciliation", problems)
    return out


def build_reconcile_approvals_dag(schedule: str | None = None) -> Any:
    """The daily 审批单 ↔ 记账凭证 reconciliation; no DAG while config/approval_reconciliation.yaml is absent."""
    if not Settings.from_env().approvals_file.exists():
        return None
    return _maintenance_dag(
        "reconcile_approvals",
        "reconcile",
        reconcile_approvals_summary,
        schedule or os.environ.get("ARCHIVE_HUB_APPROVALS_RECONCILE_SCHEDULE", "@daily"),
        "审批单 ↔ 记账凭证: archived OA approvals against the archived vouchers that booked them",
        "Pairs each approval with its voucher (applicant = 职员, same amount, within match_days), keeps the pairs, "
        "writes the report (已审批未入账, 无审批的报销凭证) under reports/approvals/; fails naming unreadable vouchers.",
    )


def dags_from_config() -> dict[str, Any]:
    return {f"archive_{path.stem}": build_dag(load_source(path)) for path in source_files()}
