"""`archive-hub`: the command line for operators, archivists and auditors (typer + rich)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich import box
from rich.table import Table

from archive_hub.cli_bank import bank_app
from archive_hub.cli_common import console, err, with_progress
from archive_hub.cli_common import new_progress as _progress
from archive_hub.cli_common import open_catalog as _catalog
from archive_hub.cli_destruction import destruction_app
from archive_hub.cli_oa import oa_app
from archive_hub.cli_transfer import transfer_app
from archive_hub.cli_usage import loan_app, usage
from archive_hub.settings import Settings

if TYPE_CHECKING:
    from archive_hub.catalog import Catalog
    from archive_hub.catalog.history import RecordHistory

app = typer.Typer(
    help="archive-hub: accounting records to verified e-archive packages.", no_args_is_help=True
)
quarantine_app = typer.Typer(
    help="Records refused by mapping, validation or archiving.", no_args_is_help=True
)
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(bank_app, name="bank")
app.add_typer(destruction_app, name="destruction")
app.add_typer(loan_app, name="loan")
app.add_typer(transfer_app, name="transfer")
app.add_typer(oa_app, name="oa")
app.command()(usage)


T = TypeVar("T")

# The scope option of the commands that read the archive class by class (inventory, formats).
CodePrefix = Annotated[
    str | None, typer.Option("--code", help="only 档号 starting with this (a fonds, a year, a class)")
]


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _exit_on_problems(problems: list[str]) -> None:
    """Each problem on a line of its own (stderr), then exit 2; nothing when there are none."""
    if problems:
        for problem in problems:
            err.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def _json_lines(items: Iterable[dict[str, Any]]) -> None:
    """One JSON object a line (jq, pandas, a spreadsheet import), Chinese kept readable."""
    for item in items:
        print(json.dumps(item, ensure_ascii=False))


def _short(text: str, keep: int = 16) -> str:
    """A long key (a file's SHA-256) cut for a listing; --json gives it whole."""
    return text if len(text) <= keep else text[:keep] + "…"


@app.command()
def sync(
    source: Annotated[str, typer.Argument(help="source id, the name of a file in config/sources/")],
    run_id: Annotated[str | None, typer.Option(help="run id (default: cli-<timestamp>)")] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="read the source whole, not from its cursor: finds what an incremental read cannot (a "
            "voucher edited in a closed period of an API that filters by period); nothing is archived twice",
        ),
    ] = False,
) -> None:
    """Run one source's pipeline now, in this process (the DAG runs the same steps)."""
    from archive_hub.pipeline import STEPS, run_step
    from archive_hub.pipeline.finalize import QuarantineThresholdError
    from connectors.errors import ConnectorError
    from mappings import MappingConfigError

    run_id = run_id or f"cli-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    with _progress() as progress:
        tasks: dict[str, Any] = {}

        def report(phase: str, advance: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], advance=advance, total=total if total else None)

        try:
            extracted = None
            for step in STEPS:
                result = run_step(step, source, run_id, report, from_start=full and step == "extract")
                if step == "extract":
                    extracted = result["records"]
                    for phase in ("archive",):
                        tasks[phase] = progress.add_task(phase, total=extracted)
        except (ConnectorError, MappingConfigError, QuarantineThresholdError) as exc:
            _fail(str(exc))
    _print_summary(result)


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"{summary['source']}: {summary['status']}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("read", "archived", "new_versions", "unchanged", "quarantined"):
        table.add_row(key.replace("_", " "), str(summary[key]))
    table.add_row("MB written", f"{summary['bytes_written'] / 1e6:.1f}")
    console.print(table)
    console.print(f"  run {summary['run_id']}", soft_wrap=True, highlight=False)  # whole: it is looked up


@app.command()
def check(
    source: Annotated[str, typer.Argument(help="source id, the name of a file in config/sources/")],
    sample: Annotated[int, typer.Option(help="read, map and validate this many records", min=1)] = 20,
    show_record: Annotated[
        bool, typer.Option("--show-record", help="print the first record as it would be archived (JSON)")
    ] = False,
) -> None:
    """Check a source before its first sync: configuration, connection, mapping, and its first records."""
    from archive_hub.source_check import check_source

    report = check_source(source, sample)
    console.print(f"[green]✓[/green] {report.source}: configuration and connection ok ({report.kind})")
    console.print(f"[green]✓[/green] mapping {report.mapping} loads", highlight=False)
    for problem in report.problems[:20]:
        err.print(f"[red]✗[/red] {problem}", highlight=False)
    if not report.read:
        console.print("  no records to read now (nothing new in the source since what is archived)")
    else:
        mark = "[green]✓[/green]" if report.ok else "[red]✗[/red]"
        console.print(
            f"{mark} {report.mapped} of the first {report.read} record(s) map and pass the quality gate",
            highlight=False,
        )
    if show_record and report.example is not None:
        print(json.dumps(report.example, ensure_ascii=False, indent=2))
    if not report.ok:
        raise typer.Exit(3)


@app.command()
def verify(
    chain_only: Annotated[bool, typer.Option("--chain-only", help="only check the event hash chain")] = False,
    code: Annotated[
        str | None,
        typer.Option("--code", help="only records whose 档号 starts with this (a fonds, a year, ...)"),
    ] = None,
) -> None:
    """Re-hash every package against both manifests and the catalog, and check the event chain."""
    from archive_hub.catalog.events import verify_chain
    from archive_hub.verification import verify_archive

    catalog = _catalog()
    if chain_only:
        with catalog.reading() as session:
            report = verify_chain(session)
        if not report.ok:
            _fail(f"event chain broken at event {report.first_bad_seq}: {report.reason}", 2)
        console.print(f"event chain ok: {report.events} events")
        return
    settings = Settings.from_env()
    result = with_progress(
        "verifying packages",
        lambda step: verify_archive(
            catalog, settings.archive_root, step, code_prefix=code, staging_root=settings.staging_root
        ),
    )
    if code and not result.packages and not result.problems:
        _fail(f"no archived record's 档号 starts with {code!r} (`archive-hub search --code` lists them)", 2)
    console.print(
        (f"档号 {code}*: " if code else "")
        + f"packages {result.packages}, files {result.files}, {result.bytes / 1e6:.1f} MB re-hashed (SHA-256 + SM3); "
        f"event chain {'ok' if result.chain_ok else 'BROKEN'} ({result.events} events)"
    )
    if result.problems:
        for problem in result.problems[:50]:
            err.print(f"[red]✗[/red] {problem}", highlight=False)
        if len(result.problems) > 50:
            err.print(f"... and {len(result.problems) - 50} more")
        raise typer.Exit(2)
    console.print("[green]all packages verified[/green]")


@app.command()
def search(
    code: Annotated[str | None, typer.Option("--code", help="档号 or its prefix")] = None,
    voucher: Annotated[str | None, typer.Option("--voucher", help="凭证号, e.g. 记-0012")] = None,
    year: Annotated[int | None, typer.Option(help="fiscal year")] = None,
    period: Annotated[int | None, typer.Option(help="period (month)")] = None,
    amount_min: Annotated[str | None, typer.Option("--min", help="smallest 金额合计")] = None,
    amount_max: Annotated[str | None, typer.Option("--max", help="largest 金额合计")] = None,
    text: Annotated[
        str | None, typer.Option(help="words in title, summaries, accounts, counterparties")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="会计资料形式: 凭证, 账簿, 报告, 其他 (or PZ, ZB, BG, QT)")
    ] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="日期 on or after (YYYY-MM-DD)")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="日期 on or before (YYYY-MM-DD)")] = None,
    invoice: Annotated[
        str | None,
        typer.Option(help="发票号码 of an e-invoice (OFD/XML) it booked: a 数电票's 20 digits, or 代码-号码"),
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """Find archived records by 档号, category, voucher number, period or dates, amount, text or 发票号码."""
    from archive_hub.catalog.search import SearchQuery, hit_summary
    from archive_hub.catalog.search import search as run_search
    from canonical_model.archival_code import CATEGORY_CODES

    if category is not None and category not in (*CATEGORY_CODES, *CATEGORY_CODES.values()):
        choices = ", ".join(f"{k} ({v})" for k, v in CATEGORY_CODES.items())
        raise typer.BadParameter(f"{category!r} is none of {choices}", param_hint="--category")
    dates = []
    for label, value in (("--from", date_from), ("--to", date_to)):
        try:
            dates.append(dt.date.fromisoformat(value) if value else None)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=label) from None

    for label, value in (("--min", amount_min), ("--max", amount_max)):
        if value is not None:
            try:
                Decimal(value)
            except ArithmeticError:
                raise typer.BadParameter(f"{value!r} is not an amount", param_hint=label) from None
    query = SearchQuery(
        code,
        voucher,
        year,
        period,
        Decimal(amount_min) if amount_min else None,
        Decimal(amount_max) if amount_max else None,
        text,
        limit,
        CATEGORY_CODES.get(category or "", category),
        *dates,
        invoice.strip() if invoice else None,
    )
    with _catalog().reading() as session:
        rows = run_search(session, query)
    root = Settings.from_env().archive_root
    if as_json:
        _json_lines(
            {**hit_summary(rec), "package": str(root / pkg.path) if pkg else None} for rec, pkg in rows
        )
        return
    if console.width < 120:  # a table would leave the title a few characters: two lines a record instead
        console.print(f"{len(rows)} record(s)")
        for rec, _pkg in rows:
            amount = f"{rec.amount_total:,.2f}" if rec.amount_total is not None else ""
            console.print(
                f"[bold]{rec.archival_code}[/bold]  {rec.voucher_no or ''}  {rec.record_date}  {amount}  "
                f"v{rec.current_version}\n    {rec.title}",
                highlight=False,
                soft_wrap=True,
            )
        return
    table = Table(title=f"{len(rows)} record(s)")
    table.add_column("档号", no_wrap=True, min_width=24)  # the one column that must never be cut
    for col in ("凭证号", "日期", "金额合计"):  # short values: cut in the middle they would misread
        table.add_column(col, no_wrap=True, justify="right" if col == "金额合计" else "left")
    table.add_column("题名", overflow="fold")  # the title takes whatever width is left
    table.add_column("版本", no_wrap=True, justify="right")
    for rec, _pkg in rows:
        table.add_row(
            rec.archival_code,
            rec.voucher_no or "",
            rec.record_date.isoformat(),
            f"{rec.amount_total:,.2f}" if rec.amount_total is not None else "",
            rec.title[:60],
            str(rec.current_version),
        )
    console.print(table)


@app.command()
def show(
    code: Annotated[str, typer.Argument(help="档号, exactly (search --code finds one by prefix)")],
    all_files: Annotated[
        bool, typer.Option("--all-files", help="list the files of every version, not only the current one")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--verify", help="re-hash every version of this record and check the event chain (logged)"
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the record and its history as JSON")] = False,
    purpose: Annotated[
        str | None, typer.Option(help="why it is consulted; registered with who asked (查阅, 利用登记)")
    ] = None,
) -> None:
    """One record: its metadata, every version with its files and hashes, its events and quarantine history.

    Every call is a consultation (查阅) and is registered in the event chain (`archive-hub usage` lists them)."""
    from archive_hub.catalog.events import Event, append
    from archive_hub.copies import requester
    from archive_hub.verification import verify_record

    by = requester()  # before the transaction: with SSO it may ask the identity provider
    catalog = _catalog()
    history = _history_or_fail(catalog, code)
    with catalog.transaction() as session:
        append(session, [Event("consulted", code, {"by": by, "purpose": (purpose or "").strip() or None})])
    settings = Settings.from_env()
    report = verify_record(catalog, settings.archive_root, history, settings.staging_root) if check else None
    history = _history_or_fail(catalog, code)  # again, so the consultation and check just logged are listed
    if as_json:
        body = history.as_dict()
        if report is not None:
            body["verify"] = {"ok": report.ok, "problems": report.problems, "events_checked": report.events}
        print(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        _print_history(history, settings, all_files)
        if report is not None:
            for problem in report.problems:
                err.print(f"[red]✗[/red] {problem}", highlight=False)
            if report.ok:
                console.print(
                    f"[green]verified[/green]: {report.packages} version(s), {report.files} files re-hashed "
                    f"(SHA-256 + SM3) against manifests and catalog; event chain ok ({report.events} events)"
                )
    if report is not None and not report.ok:
        raise typer.Exit(2)


@app.command()
def copy(
    code: Annotated[str, typer.Argument(help="档号, exactly")],
    destination: Annotated[Path, typer.Argument(help="folder to put the copy in (created if missing)")],
    purpose: Annotated[str, typer.Option(help="why the copy is made (利用登记), e.g. 2025年度审计取证")],
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="every version, not only the current one")
    ] = False,
) -> None:
    """Hand out a verified copy of a record's package; the copy, who asked and why are logged (复制, 利用登记)."""
    from archive_hub.copies import CopyRefused, copy_record, requester

    requester()  # who copies is known (with SSO: signed in) before anything is copied

    if not purpose.strip():
        raise typer.BadParameter("say why the copy is made", param_hint="--purpose")
    catalog = _catalog()
    history = _history_or_fail(catalog, code)
    try:
        made = copy_record(
            catalog,
            Settings.from_env().archive_root,
            history,
            destination,
            purpose,
            all_versions=all_versions,
        )
    except CopyRefused as exc:
        _fail(str(exc), 2)
    for m in made:
        console.print(
            f"copied v{m.version} ({m.files} files, {m.bytes:,} bytes, verified against the catalog): {m.path}",
            soft_wrap=True,
            highlight=False,
        )


def _history_or_fail(catalog: Any, code: str) -> RecordHistory:
    from archive_hub.catalog.history import record_history

    with catalog.reading() as session:
        history = record_history(session, code)
    if history is None:
        _fail(
            f"no record with 档号 {code!r} in the catalog (`archive-hub search --code PREFIX` lists them)", 2
        )
    return history


def _print_history(history: RecordHistory, settings: Settings, all_files: bool) -> None:
    from canonical_model.retention import RetentionPeriod

    rec = history.record
    retention = RetentionPeriod(rec.retention).label
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    amount = f"{rec.amount_total:,.2f} {rec.currency}" if rec.amount_total is not None else ""
    period = f"{rec.fiscal_year}-{rec.period:02d}" if rec.period else str(rec.fiscal_year)
    due = f", 到期 {rec.retention_due.isoformat()}" if rec.retention_due else " (never due)"
    current = history.current
    for label, value in (
        ("档号", rec.archival_code),
        ("题名", rec.title),
        ("来源", f"{rec.source_id}:{rec.business_id}"),
        ("凭证号", f"{rec.voucher_no or ''}" + (f"  (账簿 {rec.book_code})" if rec.book_code else "")),
        ("日期 / 期间", f"{rec.record_date.isoformat()} / {period}"),
        ("金额合计", amount),
        ("保管期限", f"{retention}{due}"),
        ("状态", f"{rec.status}, version {rec.current_version} of {len(history.versions)}"),
        (
            "位置",
            "(destroyed under a 销毁清册: see the destroyed event below)"
            if rec.status == "destroyed"
            else str(settings.archive_root / current.package.path)
            if current
            else "(not published)",
        ),
    ):
        if value.strip():  # a bank statement has no 凭证号
            head.add_row(label, value)
    console.print(head)

    versions = Table(title="versions (never overwritten; each replaces the one before)")
    for col in ("版本", "替代", "归档时间 UTC", "源变更时间", "字节"):
        versions.add_column(col, no_wrap=True, justify="right" if col == "字节" else "left")
    versions.add_column("run", overflow="fold", min_width=10)
    for v in history.versions:
        p = v.package
        versions.add_row(
            f"v{p.version}",
            f"v{v.previous_version}" if v.previous_version else "",
            f"{p.created_at:%Y-%m-%d %H:%M}",
            f"{p.source_changed_at:%Y-%m-%d %H:%M}" if p.source_changed_at else "",
            f"{p.byte_size:,}",
            p.run_id,
        )
    console.print(versions)
    for link in history.links:
        console.print(f"{link.relation}: {link.other}  ({link.basis})", soft_wrap=True, highlight=False)
    if history.invoices:
        console.print(
            "e-invoices it booked (发票, booked once: `search --invoice` finds this 件 by any of them)"
        )
        for i in history.invoices:
            console.print(
                f"  {i.invoice_key}  开票日期 {i.issued or '?'}  价税合计 {i.total or '?'}  "
                f"销售方 {i.seller_tax_id or '?'}  ({i.carrier}: {i.file_name})",
                soft_wrap=True,
                highlight=False,
            )

    # A list, not a table: a 64-digit hash must stay on one line to be compared by eye.
    for v in history.versions if all_files else [current] if current else []:
        console.print(f"[bold]files of v{v.package.version}[/bold]")
        console.print(f"  fingerprint {v.package.fingerprint}", highlight=False)
        for f in v.files:
            console.print(f"  {f.path}  [dim]{f.size:,} bytes, {f.media_type}[/dim]", highlight=False)
            console.print(f"    SHA-256 {f.sha256}\n    SM3     {f.sm3}", highlight=False)

    if history.events:
        events = Table(title="events (hash-chained log)")
        for col in ("seq", "at UTC", "kind"):
            events.add_column(col, no_wrap=True)
        events.add_column("run, detail", overflow="fold")
        for e in history.events:
            detail = json.loads(e.detail)
            short = ", ".join(
                f"{k}={v}" for k, v in detail.items() if k not in ("manifest_sha256", "fingerprint", "source")
            )
            events.add_row(
                str(e.seq), f"{e.at:%Y-%m-%d %H:%M}", e.kind, (f"{e.run_id}: " if e.run_id else "") + short
            )
        console.print(events)
    if history.quarantine:
        items = Table(title="quarantine history of this source record")
        for col in ("id", "stage", "status", "attempts"):
            items.add_column(col, no_wrap=True)
        items.add_column("reason", overflow="fold")
        for q in history.quarantine:
            items.add_row(str(q.id), q.stage, q.status, str(q.attempts), q.reason)
        console.print(items)


@app.command()
def reconcile(
    source: Annotated[str, typer.Argument(help="source id")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    xlsx: Annotated[
        Path | None, typer.Option("--xlsx", help="also write the whole report as an Excel workbook")
    ] = None,
) -> None:
    """Auditor's check: every record the source holds now is archived (current version) or quarantined."""
    from archive_hub.pipeline.context import RunContext
    from archive_hub.reconciliation import STATUSES
    from archive_hub.reconciliation import reconcile as run_reconcile

    ctx = RunContext.open(source, f"reconcile-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
    try:
        report = run_reconcile(ctx)
    finally:
        ctx.close()
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        table = Table(title=f"{source}: {report.source_records} records in the source vs the archive")
        table.add_column("period")
        for status in STATUSES:
            table.add_column(status, justify="right")
        for period, counts in sorted(report.by_period.items()):
            table.add_row(period, *(str(counts.get(s, 0)) for s in STATUSES))
        table.add_row("total", *(str(report.counts.get(s, 0)) for s in STATUSES), style="bold")
        console.print(table)
        for problem in report.problems[:20]:
            console.print(
                f"  {problem['status']}: record {problem['record']} {problem.get('reason') or ''}",
                highlight=False,
            )
        if report.archived_not_in_source:
            console.print(
                f"  {len(report.archived_not_in_source)} archived record(s) no longer in the source (kept)"
            )
    if xlsx is not None:
        from archive_hub.reconciliation_xlsx import write_xlsx

        try:
            console.print(f"workbook: {write_xlsx(report, xlsx)}", soft_wrap=True, highlight=False)
        except OSError as exc:
            _fail(f"cannot write the workbook {xlsx}: {exc.strerror or exc}", 2)
    if not report.ok:
        raise typer.Exit(4)


@app.command()
def due(
    on: Annotated[
        str | None, typer.Option("--on", help="date to judge by, YYYY-MM-DD (default: today)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines, one per class")] = False,
) -> None:
    """Records whose 保管期限 has run out by a date: what to appraise (鉴定) before any 销毁; nothing is changed."""
    from archive_hub.catalog.appraisal import due_for_appraisal, due_line, held_by_class, kept_years
    from canonical_model.archival_code import ArchivalCodeRule

    try:
        day = dt.date.fromisoformat(on) if on else dt.date.today()
    except ValueError:
        raise typer.BadParameter(f"{on!r} is not a date (YYYY-MM-DD)", param_hint="--on") from None
    with _catalog().reading() as session:
        classes = due_for_appraisal(session, day)
        held = held_by_class(session, day)
    if as_json:
        _json_lines(due_line(c, day, ArchivalCodeRule(), held.get(c.key, 0)) for c in classes)
        return
    total = sum(c.records for c in classes)
    table = Table(
        title=f"{total} record(s) due for appraisal (鉴定) by {day.isoformat()}",
        caption="永久 records are never due; nothing was changed. Next: `archive-hub destruction draw-up`",
    )
    for col in ("全宗号", "年度", "类别", "保管期限", "已保管", "到期", "件数", "held", "件号"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("已保管", "件数", "held") else "left")
    for c in classes:
        table.add_row(
            c.fonds_no,
            str(c.year),
            c.category,
            c.retention_label,
            f"{kept_years(c.year, day)}年",
            str(c.due),
            str(c.records),
            str(held.get(c.key, "")),
            f"{c.first_item:04d}–{c.last_item:04d}",
        )
    console.print(table)


@app.command()
def inventory(
    code: CodePrefix = None,
    xlsx: Annotated[
        Path | None,
        typer.Option("--xlsx", help="write the 保管清册 and every class's 归档文件目录 as an Excel workbook"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print every 件 as a JSON line, in 档号 order")
    ] = False,
) -> None:
    """What the archive holds, class by class: the 保管清册, and each class's 归档文件目录 (--xlsx, --json)."""
    from archive_hub.catalog.inventory import inventory_classes, inventory_items
    from canonical_model.archival_code import ArchivalCodeRule

    rule = ArchivalCodeRule()
    with _catalog().reading() as session:
        classes = inventory_classes(session, code)
        if code and not classes:
            _fail(f"no archived record has a 档号 starting with {code!r}")
        if as_json:
            for c in classes:
                _json_lines(
                    {"class": c.label(rule), "retention": c.retention_label, **item.as_dict()}
                    for item in inventory_items(session, c.key, code)
                )
            return
        if xlsx is not None:
            from archive_hub.inventory_xlsx import write_inventory_xlsx

            try:
                written = write_inventory_xlsx(session, xlsx, classes, code, rule)
            except OSError as exc:
                _fail(f"cannot write the workbook {xlsx}: {exc.strerror or exc}", 2)
        else:
            written = None
    table = Table(
        title=f"保管清册: {sum(c.records for c in classes)} 件 in {len(classes)} class(es)",
        caption="件号 run 0001 to 件数 in each class (verify proves no gap)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),  # fits 80 columns
    )
    for col in ("类", "期限", "件数", "日期", "金额合计", "到期"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("件数", "金额合计") else "left")
    for c in classes:
        same_year = c.first_date.year == c.last_date.year == c.year
        table.add_row(
            c.label(rule),
            c.retention_label,
            str(c.records),
            f"{c.first_date:%m-%d}–{c.last_date:%m-%d}" if same_year else f"{c.first_date}–{c.last_date}",
            "多币种"  # a sum over currencies means nothing
            if c.currency is None
            else f"{c.amount_total:,.2f} {c.currency}"
            if c.amount_total is not None
            else "",  # registers and the like carry no amount
            c.due.isoformat() if c.due else "永久",
        )
    console.print(table)
    if written is not None:
        console.print(f"workbook: {written}", soft_wrap=True, highlight=False)
    else:
        console.print("every 件 of each class (归档文件目录): --xlsx FILE, or --json", highlight=False)


@app.command()
def formats(
    code: CodePrefix = None,
    list_files: Annotated[
        bool,
        typer.Option("--list", help="name every file outside the long-term formats (the 迁移 work list)"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate",
            help="check every PDF/A claim with veraPDF (ARCHIVE_HUB_VERAPDF; scripts/verapdf.sh)",
        ),
    ] = False,
) -> None:
    """可用性: the formats the archive holds (from the bytes), and which files are not PDF/A, OFD or XML."""
    from archive_hub.format_report import format_report
    from archive_sink.formats import LONG_TERM
    from archive_sink.pdfa_validation import ValidatorUnavailable, VeraPdf

    settings = Settings.from_env()
    validator = None
    if validate:
        if not settings.verapdf:
            _fail(
                "no PDF/A validator: set ARCHIVE_HUB_VERAPDF to veraPDF's lib folder "
                "(`scripts/verapdf.sh install` fetches it and prints the value) or its launcher",
                2,
            )
        validator = VeraPdf(settings.verapdf)
    try:
        report = with_progress(
            "reading content files",
            lambda step: format_report(_catalog(), settings.archive_root, code, step, validator),
        )
    except ValidatorUnavailable as exc:
        _fail(f"PDF/A validation failed, nothing is reported: {exc}", 2)
    if code and not report.counts and not report.unreadable:
        _fail(f"no archived record has a 档号 starting with {code!r}")
    if as_json:
        print(
            json.dumps(
                {
                    "long_term_formats": list(LONG_TERM),
                    "formats": [vars(c) for c in report.counts.values()],
                    "to_convert": [
                        {"archival_code": c, "version": v, "path": f, "format": label}
                        for c, v, f, label in report.to_convert
                    ],
                    "unreadable": report.unreadable,
                    "pdfa_validated_with": report.validated_with,
                    "pdfa_verdicts": [
                        {
                            "archival_code": c,
                            "version": v,
                            "path": f,
                            "claims": label,
                            "compliant": verdict.compliant,
                            "profile": verdict.profile,
                            "failed_rules": [vars(r) for r in verdict.failed],
                            "error": verdict.error,
                        }
                        for c, v, f, label, verdict in report.pdfa_verdicts
                    ],
                },
                ensure_ascii=False,
            )
        )
        if report.not_conformant:
            raise typer.Exit(4)
        return
    table = Table(
        title=f"可用性: {report.files} content file(s) of the current versions", box=box.SIMPLE_HEAD
    )
    for col in ("format (from the bytes)", "files", "MB", "long-term"):
        table.add_column(col, justify="right" if col in ("files", "MB") else "left")
    for c in sorted(report.counts.values(), key=lambda c: (not c.long_term, -c.files)):
        table.add_row(c.label, str(c.files), f"{c.bytes / 1_000_000:.1f}", "yes" if c.long_term else "no")
    console.print(table)
    console.print(
        f"{len(report.to_convert)} file(s) outside the long-term formats ({', '.join(LONG_TERM)}): "
        + ("listed below" if list_files else "--list names each, the work list for a conversion (迁移)"),
        highlight=False,
    )
    if list_files:
        for c, v, f, label in report.to_convert:
            console.print(f"  {c} v{v}  {f}  ({label})", soft_wrap=True, highlight=False)
    if validate:
        failed = report.not_conformant
        console.print(
            f"PDF/A claims checked with {report.validated_with}: {len(report.pdfa_verdicts)}, "
            f"{len(failed)} not conformant"
            if report.pdfa_verdicts
            else "PDF/A claims checked: no file claims PDF/A",
            highlight=False,
        )
        for c, v, f, label, verdict in failed:
            console.print(
                f"  {c} v{v}  {f}  claims {label}, {verdict.summary()}", soft_wrap=True, highlight=False
            )
    for problem in report.unreadable:
        err.print(f"[red]unreadable:[/red] {problem}", highlight=False, soft_wrap=True)
    if report.unreadable:
        raise typer.Exit(2)
    if report.not_conformant:
        raise typer.Exit(4)  # a false PDF/A claim, like a virus found: a finding, not a failure to run


@app.command()
def invoices(
    code: CodePrefix = None,
    xlsx: Annotated[
        Path | None, typer.Option("--xlsx", help="also write the list as an Excel workbook")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """发票台账: every e-invoice (OFD/XML) the archive holds, with the 件 that booked it (booked once)."""
    from archive_hub.invoice_register import booked_invoices, write_xlsx

    with _catalog().reading() as session:
        lines = booked_invoices(session, code)
    if xlsx is not None:
        write_xlsx(lines, xlsx)
    if as_json:
        _json_lines(line.as_dict() for line in lines)
        return
    table = Table(title=f"发票台账: {len(lines)} e-invoice(s) booked", box=box.SIMPLE_HEAD)
    for col in ("档号", "凭证号", "发票号码", "开票日期", "价税合计", "销售方", "载体"):
        table.add_column(
            col, no_wrap=col in ("档号", "发票号码"), justify="right" if col == "价税合计" else "left"
        )
    for line in lines:
        table.add_row(
            line.archival_code,
            line.voucher_no or "",
            line.invoice_key,
            line.issued or "",
            (line.total or "") + (" [red]> 凭证金额[/red]" if line.exceeds_voucher else ""),
            line.seller_tax_id or "",
            line.carrier,
        )
    console.print(table)
    flagged = sum(line.exceeds_voucher for line in lines)
    if flagged:
        console.print(f"[red]{flagged} invoice(s) larger than the voucher they are booked to[/red]")
    if xlsx is not None:
        console.print(f"workbook: {xlsx}", soft_wrap=True, highlight=False)


@app.command()
def scan(code: CodePrefix = None) -> None:
    """病毒检测 of every archived version's files with today's signatures (clamd at ARCHIVE_HUB_CLAMD); logged."""
    from archive_hub.virus_rescan import rescan_archive
    from archive_sink.virus_scan import ClamdScanner

    settings = Settings.from_env()
    if not settings.clamd_url:
        _fail(
            "no virus scanner: set ARCHIVE_HUB_CLAMD to a clamd (unix:///path/clamd.sock or tcp://host:3310)",
            2,
        )
    report = with_progress(
        "scanning archived files",
        lambda step: rescan_archive(
            _catalog(), settings.archive_root, ClamdScanner(settings.clamd_url), code, step
        ),
    )
    for c, v, path, signature in report.found:
        err.print(f"[red]virus found[/red]: {c} v{v} {path}: {signature}", highlight=False, soft_wrap=True)
    for problem in report.unreadable:
        err.print(f"[red]unreadable:[/red] {problem}", highlight=False, soft_wrap=True)
    console.print(
        f"病毒检测: {report.files} file(s), {report.bytes / 1_000_000:.1f} MB scanned with {report.scanner}: "
        + (f"[red]{len(report.found)} found[/red]" if report.found else "[green]nothing found[/green]")
        + " (logged as a virus-scan event)",
        highlight=False,
        soft_wrap=True,
    )
    if report.found or report.unreadable:
        raise typer.Exit(4)


@app.command()
def backup(
    destination: Annotated[
        str,
        typer.Argument(
            help="folder for the backup (another disk or mount), or s3://bucket/prefix (credentials and "
            "endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)"
        ),
    ],
    check: Annotated[
        bool, typer.Option("--check", help="also re-read and re-hash the copies the backup already holds")
    ] = False,
) -> None:
    """备份: copy the packages the backup lacks (each verified before it counts as held) and the catalog."""
    from archive_hub.backup import backup as run_backup

    settings = Settings.from_env()
    report = _backup_work(
        "backing up packages",
        lambda step: run_backup(_catalog(), settings.archive_root, destination, check=check, progress=step),
        f"cannot back up to {destination}",
    )
    console.print(
        f"backup {report.destination}: {report.copied} package(s) copied ({report.bytes / 1_048_576:.1f} MB, "
        f"{report.files} files, each verified), {report.present} already there"
        + (f", {report.checked} re-hashed" if check else "")
        + (f", {report.removed} destroyed (销毁) package(s) removed" if report.removed else ""),
        soft_wrap=True,
        highlight=False,
    )
    console.print(
        f"catalog copy: {report.catalog_copy}" if report.catalog_copy else report.catalog_note,
        soft_wrap=True,
        highlight=False,
    )
    if report.lock_note:
        console.print(report.lock_note, soft_wrap=True, highlight=False)
    _exit_on_problems(report.problems)


def _backup_work(label: str, work: Callable[[Callable[[int, int], None]], T], fault: str) -> T:
    """A backup or restore with a progress bar; a refusal, a store fault or a disk fault in one line (exit 2)."""
    from archive_hub.backup import BackupRefused
    from archive_sink.object_store import ObjectStoreError

    try:
        return with_progress(label, work)
    except (BackupRefused, ObjectStoreError, ValueError) as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(f"{fault}: {exc.strerror or exc} ({exc.filename})", 2)


@app.command()
def restore(
    source: Annotated[str, typer.Argument(help="a backup: its folder, or s3://bucket/prefix")],
    destination: Annotated[Path, typer.Argument(help="folder to restore into (archive/ and catalog/)")],
    catalog: Annotated[
        str | None,
        typer.Option(
            "--catalog",
            help="list the packages from this catalog (e.g. a PostgreSQL one restored with its own tools) "
            "instead of the backup's newest catalog copy",
        ),
    ] = None,
) -> None:
    """恢复: a backup brought back into a folder, each package checked against the catalog before it shows."""
    from archive_hub.backup import restore as run_restore
    from archive_hub.settings import redact_url as _redact_url

    report = _backup_work(
        "restoring packages",
        lambda step: run_restore(source, destination, catalog_url=catalog, progress=step),
        f"cannot restore {source} into {destination}",
    )
    console.print(
        f"restore {report.source} into {destination}: {report.restored} package(s) restored "
        f"({report.bytes / 1_048_576:.1f} MB, {report.files} files, each verified), "
        f"{report.present} already there",
        soft_wrap=True,
        highlight=False,
    )
    catalog_hint = (
        f"ARCHIVE_HUB_CATALOG_URL=sqlite:///{report.catalog_copy.resolve()} "
        if report.catalog_copy
        else "ARCHIVE_HUB_CATALOG_URL=<the catalog given with --catalog> "
    )
    console.print(
        f"catalog copy: {report.catalog_copy or _redact_url(catalog or '')}\n"
        f"check it:     {catalog_hint}ARCHIVE_HUB_ARCHIVE_ROOT={(destination / 'archive').resolve()} "
        "archive-hub verify",
        soft_wrap=True,
        highlight=False,
    )
    _exit_on_problems(report.problems)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="address to listen on (behind a TLS proxy in production)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """The archive over HTTP (search, 查阅, download) for users signed in through SSO (Keycloak, OIDC).

    Needs ARCHIVE_HUB_OIDC_ISSUER (the realm URL, e.g. what `scripts/keycloak.sh start` prints) and optionally
    ARCHIVE_HUB_OIDC_AUDIENCE (default archive-hub-api). There is no anonymous mode. API docs at /docs."""
    import uvicorn

    from archive_hub.http_api import create_app
    from sso.oidc import IssuerUnreachable, OidcSettings, TokenVerifier

    settings = Settings.from_env()
    if not settings.oidc_issuer:
        _fail(
            "ARCHIVE_HUB_OIDC_ISSUER is not set: name the Keycloak realm that signs users in "
            "(e.g. https://sso.example.com/realms/archive-hub; `scripts/keycloak.sh start` starts a local one)",
            2,
        )
    try:
        verifier = TokenVerifier(OidcSettings(settings.oidc_issuer, settings.oidc_audience))
        verifier.keys()  # fail now, not at the first request
    except (IssuerUnreachable, ValueError) as exc:
        _fail(str(exc), 2)
    console.print(
        f"archive-hub serving {settings.archive_root} on http://{host}:{port} "
        f"(SSO: {settings.oidc_issuer}, audience {settings.oidc_audience})",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(create_app(settings, verifier), host=host, port=port, log_level="info")


@app.command()
def login(
    username: Annotated[
        str | None,
        typer.Option(
            help="sign in with this user's password, read from stdin (loopback dev server, scripts)"
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Sign the command line in at the SSO realm (ARCHIVE_HUB_OIDC_ISSUER): device flow, or a password."""
    import sys

    from sso.login import LoginSettings, device_login, password_login

    settings = LoginSettings.from_env()
    if settings is None:
        _fail("ARCHIVE_HUB_OIDC_ISSUER is not set: there is no SSO realm to sign in to", 2)
    if username:
        if not password_stdin:
            _fail("--username needs --password-stdin (a password is never taken from the command line)", 2)
        who = password_login(settings, username, sys.stdin.readline().rstrip("\n"))
    else:

        def show(url: str, code: str) -> None:
            err.print(f"open {url} and confirm the code [bold]{code}[/bold]; waiting...", highlight=False)

        who = device_login(settings, show)
    console.print(
        f"signed in as {who.username} (roles: {', '.join(sorted(who.roles)) or 'none'})", highlight=False
    )


@app.command()
def logout() -> None:
    """End the SSO session of the command line and forget its tokens."""
    from sso.login import LoginSettings
    from sso.login import logout as run_logout

    settings = LoginSettings.from_env()
    if settings is None:
        _fail("ARCHIVE_HUB_OIDC_ISSUER is not set: there is no SSO login to end", 2)
    console.print("signed out" if run_logout(settings) else "was not signed in")


@app.command()
def whoami() -> None:
    """Who the hub registers as the one asking: the SSO user, or without SSO the ARCHIVE_HUB_USER/login name."""
    from sso.login import LoginSettings, signed_in

    settings = LoginSettings.from_env()
    if settings is None:
        from archive_hub.copies import requester

        console.print(f"{requester()} (no SSO: ARCHIVE_HUB_OIDC_ISSUER is not set)", highlight=False)
        return
    who = signed_in(settings)
    console.print(
        f"{who.username} at {settings.oidc.issuer} (roles: {', '.join(sorted(who.roles)) or 'none'})",
        highlight=False,
    )


@app.command()
def sources(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines, one per source")] = False,
) -> None:
    """Configured sources: kind, schedule, records archived, open quarantine, cursor and last run."""
    from sqlalchemy import func, select

    from archive_hub.catalog.models import ArchiveRecordRow, CursorRow, QuarantineRow, SyncRunRow
    from archive_hub.sources import load_source, source_files
    from connectors.errors import ConnectorError

    settings = Settings.from_env()
    rows = []
    with _catalog().reading() as session:
        archived, open_items = (
            dict(
                session.execute(
                    select(t.source_id, func.count()).where(t.status == status).group_by(t.source_id)
                ).all()
            )
            for t, status in ((ArchiveRecordRow, "archived"), (QuarantineRow, "open"))
        )
        for path in source_files(settings):
            row: dict[str, Any] = {"source": path.stem}
            try:
                config = load_source(path, settings)
                row |= {"kind": config.kind, "schedule": config.schedule, "description": config.description}
            except ConnectorError as exc:  # one broken file must not hide the others
                row["error"] = str(exc)
            cursor = session.execute(
                select(CursorRow.value).where(CursorRow.source_id == path.stem).limit(1)
            ).scalar_one_or_none()
            last = session.execute(
                select(SyncRunRow)
                .where(SyncRunRow.source_id == path.stem)
                .order_by(SyncRunRow.started_at.desc())
                .limit(1)
            ).scalar_one_or_none()
            row |= {
                "archived": archived.get(path.stem, 0),
                "open_quarantine": open_items.get(path.stem, 0),
                "cursor": cursor,
                "last_run": {
                    "run_id": last.run_id,
                    "status": last.status,
                    "started_at": last.started_at.isoformat(),
                }
                if last
                else None,
            }
            rows.append(row)
    if as_json:
        _json_lines(rows)
        return
    for row in rows:
        if "error" in row:
            console.print(f"[bold]{row['source']}[/bold]  [red]broken:[/red] {row['error']}", highlight=False)
            continue
        console.print(
            f"[bold]{row['source']}[/bold]  {row['kind']}  {row['schedule'] or 'manual'}  {row['description']}",
            highlight=False,
        )
        cursor = row["cursor"] or {}
        last = row["last_run"]
        console.print(
            f"  archived {row['archived']}, open quarantine {row['open_quarantine']}, "
            f"cursor {cursor.get('changed_at', 'none yet')}"
            + (f" / {_short(cursor['key'])}" if cursor.get("key") else ""),
            highlight=False,
        )
        if last:
            style = {"success": "green", "failed": "red"}.get(last["status"], "yellow")
            console.print(
                f"  last run [{style}]{last['status']}[/{style}] {last['started_at'][:16]}  {last['run_id']}",
                soft_wrap=True,
                highlight=False,
            )


@app.command()
def runs(
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """Recent sync runs (DAG runs, `sync` and `quarantine retry` alike) with their outcome and counts."""
    from sqlalchemy import select

    from archive_hub.catalog.models import SyncRunRow
    from archive_hub.sources import find_source

    if source:
        find_source(source)  # an unknown source is an error, not an empty list
    query = select(SyncRunRow).order_by(SyncRunRow.started_at.desc()).limit(limit)
    if source:
        query = query.where(SyncRunRow.source_id == source)
    with _catalog().reading() as session:
        rows = session.execute(query).scalars().all()
    counts = ("read", "archived", "new_versions", "unchanged", "quarantined")
    if as_json:
        _json_lines(
            {
                "run_id": r.run_id,
                "source": r.source_id,
                "status": r.status,
                "started_at": r.started_at.isoformat(),
                "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                **{k: r.summary.get(k) for k in counts},
            }
            for r in rows
        )
        return
    # Two lines a run, not a table: the run id must stay whole to be looked up (runs/<source>/<run>/).
    for r in rows:
        style = {"success": "green", "failed": "red"}.get(r.status, "yellow")
        told = ", ".join(f"{k.replace('_', ' ')} {r.summary[k]}" for k in counts if k in r.summary)
        console.print(
            f"{r.started_at:%Y-%m-%d %H:%M}  {r.source_id}  [{style}]{r.status}[/{style}]  {r.run_id}",
            soft_wrap=True,
            highlight=False,
        )
        if "error" in r.summary:
            told = (
                f"{told + '; ' if told else ''}failed in {r.summary.get('failed_step')}: {r.summary['error']}"
            )
        console.print(f"  {told or 'no summary yet'}", highlight=False, soft_wrap=True)
    if not rows:
        console.print("no runs yet")


@quarantine_app.command("list")
def quarantine_list(
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """Open quarantine items with their reasons."""
    from archive_hub.catalog.quarantine import open_items
    from archive_hub.sources import find_source

    if source:
        find_source(source)  # an unknown source is an error, not an empty list
    with _catalog().reading() as session:
        items = open_items(session, source)
    if as_json:
        _json_lines(
            {
                "id": i.id,
                "source": i.source_id,
                "record": i.business_id,
                "stage": i.stage,
                "reason": i.reason,
                "attempts": i.attempts,
                "mapping_version": i.mapping_version,
                "run_id": i.run_id,
            }
            for i in items
        )
        return
    if console.width < 120:  # a table would fold the reason (and the paths in it) into a narrow column
        console.print(f"{len(items)} open quarantine item(s)")
        for i in items:
            console.print(
                f"[bold]{i.id}[/bold]  {i.source_id}  record {i.business_id}  {i.stage}, attempt {i.attempts}"
                f"\n    {i.reason}",
                highlight=False,
                soft_wrap=True,
            )
        return
    table = Table(title=f"{len(items)} open quarantine item(s)")
    for col in ("id", "source", "stage", "attempts"):  # short values stay whole
        table.add_column(col, no_wrap=True, justify="right" if col in ("id", "attempts") else "left")
    table.add_column("record", overflow="fold", max_width=10)  # bank keys can be long file names
    table.add_column("reason", overflow="fold", min_width=20)  # the reason takes the width that is left
    for i in items:
        table.add_row(str(i.id), i.source_id, i.stage, str(i.attempts), i.business_id, i.reason)
    console.print(table)


@quarantine_app.command("retry")
def quarantine_retry(
    source: Annotated[str, typer.Option(help="source whose items to re-drive")],
    ids: Annotated[
        list[int] | None, typer.Argument(help="item ids (default: all open items of the source)")
    ] = None,
) -> None:
    """Re-drive quarantined records after the source data or the mapping was fixed."""
    from archive_hub.catalog.quarantine import open_items
    from archive_hub.pipeline.context import RunContext
    from archive_hub.pipeline.redrive import redrive

    ctx = RunContext.open(source, f"retry-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}")
    try:
        if ids:
            with ctx.catalog.reading() as session:
                found = {i.id for i in open_items(session, source, ids)}
            unknown = sorted(set(ids) - found)
            if unknown:
                _fail(f"no open quarantine item {', '.join(map(str, unknown))} for source {source}", 2)
        summary = redrive(ctx, ids or None)
    finally:
        ctx.close()
    console.print(
        f"retried {summary['retried']} ({summary.get('from_source', 0)} re-read from the source, "
        f"{summary.get('from_quarantine_payload', 0)} from the kept payload): resolved {summary['resolved']}, "
        f"still quarantined {summary['still_quarantined']}"
    )
    if summary["still_quarantined"]:
        raise typer.Exit(3)


@app.command("seed-sample-erp")
def seed_sample_erp_cmd(
    vouchers: Annotated[int, typer.Option(help="normal vouchers to create")] = 3000,
    attachment_every: Annotated[int, typer.Option(help="every k-th voucher gets an attachment")] = 4,
    bank_books: Annotated[
        bool, typer.Option(help="book the 工商银行基本户 (1002.01) from the sample bank statements' year")
    ] = True,
    einvoices: Annotated[
        bool, typer.Option(help="deliver some invoices as 数电票 OFD/XML instead of PDF (one booked twice)")
    ] = True,
) -> None:
    """Create the sample ERP (SQLite + attachment files) under ARCHIVE_HUB_HOME/sample_erp."""
    from connectors.erp.sample_erp.seed import seed_sample_erp

    home = Settings.from_env().home
    summary = seed_sample_erp(
        f"sqlite:///{home / 'sample_erp' / 'erp.sqlite'}",
        home / "sample_erp" / "attachments",
        vouchers=vouchers,
        attachment_every=attachment_every,
        bank_books=bank_books,
        einvoices=einvoices,
    )
    console.print(summary.one_line())


@app.command()
def demo(
    vouchers: Annotated[int, typer.Option(help="sample vouchers to seed on the first run")] = 3000,
) -> None:
    """Seed the sample ERP and bank inbox (first time), run the archiving DAGs and reconcile_bank for real, verify, say where results are."""
    from sqlalchemy import select

    from archive_hub.catalog.models import InvoiceClaimRow
    from archive_hub.verification import verify_archive
    from archive_sink.filesystem import published_packages
    from connectors.bank.sample_statements import write_sample_inbox
    from connectors.erp.sample_erp.seed import seed_sample_erp

    settings = Settings.from_env()
    erp = settings.home / "sample_erp" / "erp.sqlite"
    if not erp.exists():
        with console.status("seeding the sample ERP (华东精密制造有限公司, fiscal year 2025)"):
            summary = seed_sample_erp(
                f"sqlite:///{erp}",
                erp.parent / "attachments",
                vouchers=vouchers,
                bank_books=True,
                einvoices=True,
            )
        console.print(f"[bold]sample ERP[/bold]: {summary.one_line()}")
    else:
        console.print(
            f"[bold]sample ERP[/bold]: {erp} (already seeded; this run shows the idempotent re-run)"
        )
    inbox = settings.home / "bank_inbox"
    if not inbox.exists():
        files = write_sample_inbox(inbox)
        console.print(
            f"[bold]bank inbox[/bold]: {len(files)} statement files (ICBC export, camt.053, MT940, one truncated) in {inbox}"
        )
    catalog = _catalog()
    for source_id in ("erp_sample", "bank_inbox"):
        _demo_dag(settings, catalog, source_id)
    _demo_oa(settings, catalog, erp)
    _demo_reconcile_bank(settings, catalog)
    with console.status("verifying every package (SHA-256 + SM3) and the event chain"):
        report = verify_archive(catalog, settings.archive_root, staging_root=settings.staging_root)
    status = "[green]ok[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
    console.print(
        f"verify: {report.packages} packages, {report.files} files, event chain of {report.events} events: {status}"
    )
    packages = published_packages(settings.archive_root)
    voucher = next((p for p in packages if "-PZ-" in p.parent.name), None)
    statement = next((p for p in packages if "-QT-" in p.parent.name), None)
    # Paths and commands are printed whole (soft wrap): cut by rich at 80 columns they no longer paste.
    lines = [("archive packages", settings.archive_root)]
    if voucher:
        lines.append(("a voucher", voucher))
    if statement:
        lines.append(("a bank statement", statement))
    lines += [
        ("catalog (SQLite)", settings.home / "catalog.sqlite"),
        ("quarantined bytes", settings.home / "quarantine"),
        ("run summaries", f"{settings.runs_root}/<source>/<run>/summary.json"),
        ("bank tables", settings.home / "reports" / "bank"),
        ("approvals report", settings.home / "reports" / "approvals"),
        ("approval inbox", settings.home / "oa_inbox" / "wecom_approvals"),
    ]
    console.print("\n[bold]Results[/bold]")
    for label, value in lines:
        console.print(f"  {label:<17}: {value}", soft_wrap=True, highlight=False)
    with catalog.reading() as session:  # an e-invoice the archive holds, when there is one
        invoice_no = session.execute(
            select(InvoiceClaimRow.invoice_no).order_by(InvoiceClaimRow.invoice_key).limit(1)
        ).scalar()
    tries = [
        "uv run archive-hub search --text 差旅费",
        *(
            [f"uv run archive-hub search --invoice {invoice_no}  # which 件 booked this 数电票 (发票号码)"]
            if invoice_no
            else []
        ),
        "uv run archive-hub invoices --xlsx var/发票台账.xlsx  # every e-invoice archived, with the 件 that booked it",
        "uv run archive-hub formats                # 可用性: formats from the bytes (--validate: PDF/A claims by veraPDF)",
        *([f"uv run archive-hub show '{voucher.parent.name}' --verify"] if voucher else []),
        "uv run archive-hub reconcile erp_sample",
        "uv run archive-hub bank reconcile         # 银行存款余额调节表: the archived statements against the books",
        "uv run archive-hub oa reconcile           # 审批单 ↔ 记账凭证: 已审批未入账, 无审批的报销凭证",
        "uv run archive-hub search --text 审批单号   # the WeCom approvals (原始凭证); show one to see its voucher",
        "uv run archive-hub verify",
        "uv run archive-hub inventory --xlsx var/目录.xlsx",
        "uv run archive-hub quarantine list",
        "uv run archive-hub usage                  # who consulted, copied or borrowed what (利用登记簿)",
        "uv run archive-hub due --on 2056-01-01    # then: archive-hub destruction draw-up / sign / execute",
        "uv run archive-hub backup var/backup      # 备份 (or s3://bucket/prefix); restore with archive-hub restore",
        "ARCHIVE_HUB_OIDC_ISSUER=$(scripts/keycloak.sh start) uv run archive-hub serve   # web access behind SSO",
    ]
    console.print("\n[bold]Try[/bold]")
    for command in tries:
        console.print(f"  {command}", soft_wrap=True, highlight=False)


def _demo_dag(settings: Settings, catalog: Catalog, source_id: str) -> None:
    """One archiving DAG run by Airflow, then what it did: the run summary and each quarantined record."""
    from sqlalchemy import select

    from archive_hub.airflow_runner import run_airflow_dag
    from archive_hub.catalog.models import SyncRunRow
    from archive_hub.catalog.quarantine import open_items
    from archive_hub.pipeline.context import run_dir_name

    log = settings.home / "airflow" / f"dags-test-{source_id}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with console.status(
        f"running DAG archive_{source_id} with Airflow (extract → map → validate → archive → finalize)"
    ):
        rc = run_airflow_dag(f"archive_{source_id}", settings, log)
    if rc != 0:
        _fail(f"the Airflow DAG run archive_{source_id} failed (exit {rc}); its log: {log}")
    with catalog.reading() as session:
        run = session.execute(
            select(SyncRunRow)
            .where(SyncRunRow.source_id == source_id)
            .order_by(SyncRunRow.started_at.desc())
            .limit(1)
        ).scalar_one()
        items = open_items(session, source_id)
    _print_summary(run.summary)
    if items:  # lines, not a table: a reason quotes a path, and a path cut by the table no longer pastes
        console.print(
            f"  quarantined (fix the source or the mapping, then "
            f"`archive-hub quarantine retry --source {source_id}`):",
            soft_wrap=True,
            highlight=False,
        )
        for i in items:
            console.print(f"    {i.business_id[:16]}  {i.stage}: {i.reason}", soft_wrap=True, highlight=False)
    console.print(
        f"  run summary: {settings.runs_root / source_id / run_dir_name(run.run_id) / 'summary.json'}",
        soft_wrap=True,
        highlight=False,
    )
    console.print(f"  Airflow log: {log}", soft_wrap=True, highlight=False)


def _demo_oa(settings: Settings, catalog: Catalog, erp: Path) -> None:
    """WeCom's side played locally: approvals finish, callbacks arrive, the DAG archives them, and
    `oa reconcile` pairs them with the vouchers that booked them (审批单 ↔ 记账凭证)."""
    from archive_hub.airflow_runner import run_airflow_dag
    from archive_hub.approvals import load_scopes, report_dir
    from archive_hub.demo_oa import deliver_callbacks, running_wecom, sample_dir, wecom_env
    from connectors.oa.sample_wecom import write_sample_wecom

    folder = sample_dir(settings)
    wecom_env(settings)
    if not (folder / "callbacks.json").exists():
        made = write_sample_wecom(f"sqlite:///{erp}", folder)
        console.print(f"[bold]sample WeCom[/bold]: {made.one_line()}", soft_wrap=True, highlight=False)
    with running_wecom(settings) as (peer_url, receiver_url):
        with console.status(f"WeCom sends its approval callbacks to the receiver at {receiver_url}"):
            delivered = deliver_callbacks(settings, receiver_url, "wecom_approvals")
        if delivered.already:
            console.print("[bold]WeCom callbacks[/bold]: delivered by an earlier run (the inbox keeps them)")
        else:
            forged = (
                "refused (403), kept in quarantine" if delivered.refused_forgery else "[red]ACCEPTED[/red]"
            )
            console.print(
                f"[bold]WeCom callbacks[/bold]: {delivered.kept} of {delivered.sent} kept in the approval inbox "
                f"(signature checked); a forged one: {forged}",
                highlight=False,
            )
        _demo_dag(settings, catalog, "wecom_approvals")
    log = (
        settings.home
        / "airflow"
        / f"dags-test-reconcile_approvals-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    )
    with console.status("running DAG reconcile_approvals with Airflow (审批单 ↔ 记账凭证 from the archive)"):
        rc = run_airflow_dag("reconcile_approvals", settings, log)
    if rc != 0:
        _fail(f"the Airflow DAG run reconcile_approvals failed (exit {rc}); its log: {log}")
    for scope in load_scopes(settings):
        # The newest report of the scope: the DAG names it by the books' day, which may not be ours.
        path = max(
            report_dir(settings).glob(f"{scope.source}-{scope.books}-*.json"), key=lambda p: p.stat().st_mtime
        )
        r = json.loads(path.read_text(encoding="utf-8"))
        console.print(
            f"  reconcile_approvals: {r['approvals']} approvals, {r['matched']} paired with their voucher "
            f"({r['linked_now']} new); 已审批未入账 {len(r['unbooked'])}, 无审批的报销凭证 {len(r['unapproved'])}; "
            f"report: {path}",
            soft_wrap=True,
            highlight=False,
        )
    console.print(f"  Airflow log: {log}", soft_wrap=True, highlight=False)


def _demo_reconcile_bank(settings: Settings, catalog: Catalog) -> None:
    """The monthly DAG once: the 银行存款余额调节表 from the archive, kept and archived as a record (10年)."""
    from sqlalchemy import select

    from archive_hub.airflow_runner import run_airflow_dag
    from archive_hub.bank_reconciliation_record import register_key
    from archive_hub.catalog.models import ArchiveRecordRow, BankReconciliationRow

    log = settings.home / "airflow" / f"dags-test-reconcile_bank-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    with console.status("running DAG reconcile_bank with Airflow (银行存款余额调节表 from the archive)"):
        rc = run_airflow_dag("reconcile_bank", settings, log)
    if rc != 0:
        _fail(f"the Airflow DAG run reconcile_bank failed (exit {rc}); its log: {log}")
    with catalog.reading() as session:
        for row in session.scalars(select(BankReconciliationRow).order_by(BankReconciliationRow.on)):
            code = session.scalars(
                select(ArchiveRecordRow.archival_code).where(
                    ArchiveRecordRow.business_id == register_key(row.account, row.on)
                )
            ).first()
            console.print(
                f"  reconcile_bank: 银行存款余额调节表 {row.account} on {row.on} balanced, archived 10年 as {code}",
                soft_wrap=True,
                highlight=False,
            )
    console.print(f"  Airflow log: {log}", soft_wrap=True, highlight=False)


def main() -> None:
    """Entry point: expected failures become one clear line on stderr (exit 2), never a traceback."""
    try:
        app()
    except Exception as exc:
        message = _expected_failure(exc)
        if message is None:
            raise
        err.print(f"[red]error:[/red] {message}", highlight=False)
        raise SystemExit(2) from None


def _expected_failure(exc: Exception) -> str | None:
    """The one line for a failure the user can act on; None for a bug. Imported only when something failed,
    so a command that needs neither SQLAlchemy nor the mapping engine starts without them."""
    from decimal import InvalidOperation

    from sqlalchemy.exc import SQLAlchemyError

    from archive_hub.settings import redact_url
    from archive_sink.virus_scan import ScannerUnavailable
    from connectors.errors import ConnectorError
    from mappings import MappingConfigError
    from sso.login import NotSignedIn

    if isinstance(exc, ConnectorError | MappingConfigError | ScannerUnavailable | NotSignedIn):
        return str(exc)
    if isinstance(exc, SQLAlchemyError):
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        url = redact_url(Settings.from_env().catalog_url)
        return f"catalog {url}: {type(exc).__name__}: {detail}"
    if isinstance(exc, InvalidOperation):
        return "an amount is not a decimal number"
    return None


if __name__ == "__main__":
    main()
