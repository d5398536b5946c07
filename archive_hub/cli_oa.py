"""`archive-hub oa ...`: receive OA callbacks, catch up on missed ones, reconcile approvals with vouchers.

The archiving itself is the source's DAG (`archive_wecom_approvals`, `archive_dingtalk_approvals`) or
`archive-hub sync <source>`; these commands are what operations and auditors need around it, for every
OA vendor alike (each source's stream is an ApprovalInboxStream).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

oa_app = typer.Typer(
    help="OA approvals (审批): callback receiver, backfill, approvals vs vouchers.",
    no_args_is_help=True,
    add_completion=False,
)

EXIT_REFUSED = 2


@oa_app.callback()
def _main() -> None:
    """OA approvals (WeCom 企业微信, DingTalk 钉钉): archived as 原始凭证 once finished, paired with vouchers."""


def _refuse(message: str) -> typer.Exit:
    from archive_hub.cli_common import err

    err.print(f"[red]{message}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_REFUSED)


def _date(value: str | None, option: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        raise _refuse(f"{option} {value}: not a date (YYYY-MM-DD)") from None


@oa_app.command("serve")
def serve_cmd(
    host: Annotated[
        str, typer.Option(help="address to listen on (a reverse proxy adds TLS in front)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8070,
) -> None:
    """The callback receiver: WeCom's 接收事件服务器 URL and DingTalk's 事件订阅 (HTTP推送) request URL are
    http(s)://<host>/callbacks/<source id>."""
    import logging

    import uvicorn

    from archive_hub.oa_callbacks import make_app

    # uvicorn configures only its own loggers: the receiver's "kept"/"refused" lines need a handler too.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # No access log: it would repeat every query string; the receiver logs what it kept or refused.
    uvicorn.run(make_app(), host=host, port=port, access_log=False, log_level="info")


@oa_app.command("backfill")
def backfill_cmd(
    source: Annotated[str, typer.Argument(help="OA source id, e.g. wecom_approvals or dingtalk_approvals")],
    since: Annotated[str, typer.Option("--since", help="first apply day to list (YYYY-MM-DD)")],
    until: Annotated[str | None, typer.Option("--until", help="last apply day (default: today)")] = None,
) -> None:
    """Add finished approvals the OA system lists (WeCom getapprovalinfo, DingTalk instanceIds/query) to the
    inbox: callbacks missed while the receiver was down, or the history before the hub. The next sync
    archives those not archived yet."""
    from sqlalchemy import select

    from archive_hub.catalog.models import ArchiveRecordRow
    from archive_hub.cli_common import console, open_catalog
    from archive_hub.sources import build_stream, find_source
    from connectors.errors import ConnectorError
    from connectors.oa.approval_stream import ApprovalInboxStream

    start = _date(since, "--since")
    end = _date(until, "--until") or dt.date.today()
    assert start is not None
    try:
        stream = build_stream(find_source(source))
    except ConnectorError as exc:
        raise _refuse(str(exc)) from None
    if not isinstance(stream, ApprovalInboxStream):
        raise _refuse(f"{source} is not an OA approval source")
    try:
        numbers = stream.finished_between(
            dt.datetime.combine(start, dt.time(0), stream.tz),
            dt.datetime.combine(end, dt.time.max, stream.tz),
        )
    except ConnectorError as exc:
        raise _refuse(str(exc)) from None
    with open_catalog().reading() as session:
        archived = set(
            session.scalars(
                select(ArchiveRecordRow.business_id).where(
                    ArchiveRecordRow.source_id == source, ArchiveRecordRow.business_id.in_(numbers or [""])
                )
            )
        )
    queued = {e.content.get("sp_no") for e in stream.inbox.entries() if e.kind == "poll"}
    new = [n for n in dict.fromkeys(numbers) if n not in archived and n not in queued]
    for n in new:
        stream.inbox.put_polled(n, f"{stream.listing} {start}..{end}")
    console.print(
        f"{source}: {stream.vendor} lists {len(numbers)} finished approvals applied {start}..{end}; "
        f"{len(archived)} archived already, {len(new)} added to the inbox ({stream.inbox.folder})",
        soft_wrap=True,
        highlight=False,
    )


@oa_app.command("reconcile")
def reconcile_cmd(
    source: Annotated[str | None, typer.Argument(help="OA source id; all in config when omitted")] = None,
    on: Annotated[str | None, typer.Option("--on", help="the day of the report (default: today)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report only; do not keep the pairs found (no events)")
    ] = False,
) -> None:
    """Approvals vs vouchers (审批单 ↔ 记账凭证): pair them, keep the pairs, list 已审批未入账 and 无审批的报销凭证."""
    from archive_hub.approvals import load_scopes, reconcile_approvals, write_report
    from archive_hub.cli_common import console, open_catalog
    from archive_hub.settings import Settings
    from connectors.errors import ConfigError

    settings = Settings.from_env()
    day = _date(on, "--on")
    try:
        scopes = [s for s in load_scopes(settings) if source in (None, s.source)]
    except ConfigError as exc:
        raise _refuse(str(exc)) from None
    if not scopes:
        raise _refuse(f"no approvals scope {source or ''} in {settings.approvals_file}")
    catalog = open_catalog()
    reports = []
    for scope in scopes:
        with catalog.transaction() as session:
            reports.append(reconcile_approvals(session, scope, settings, day, link=not dry_run))
    written = [write_report(r, settings) for r in reports]
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], ensure_ascii=False, indent=1))
        return
    for r, path in zip(reports, written, strict=True):
        _print_report(console, r, path)


def _print_report(console: object, r: object, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from archive_hub.approvals import ApprovalReconciliation

    assert isinstance(console, Console) and isinstance(r, ApprovalReconciliation)
    console.print(
        f"[bold]{r.scope.source} ↔ {r.scope.books}[/bold] on {r.on}: {len(r.approvals)} approvals archived, "
        f"{len(r.matched)} paired with a voucher ({sum(a.new for a in r.approvals)} new), "
        f"{r.vouchers_read} vouchers read",
        highlight=False,
    )
    if r.unbooked:
        t = Table(title="已审批未入账: approved, no voucher books it")
        for col in ("档号", "审批单号", "申请人", "金额", "通过日", "天数"):
            t.add_column(col, no_wrap=col != "档号")
        for a in r.unbooked:
            amount = f"{a.amount:,.2f}" if a.amount is not None else ""
            t.add_row(
                a.code,
                a.number,
                a.applicant,
                amount,
                a.finished_on.isoformat(),
                str((r.on - a.finished_on).days),
            )
        console.print(t)
    if r.unapproved:
        t = Table(
            title=f"无审批的报销凭证: expenses booked for a person without an approval (since {r.scope.since})"
        )
        for col in ("档号", "凭证号", "日期", "职员", "金额", "摘要"):
            t.add_column(col, no_wrap=col not in ("档号", "摘要"))
        for e in r.unapproved:
            t.add_row(e.code, e.voucher_no, e.date.isoformat(), e.employee, f"{e.amount:,.2f}", e.summary)
        console.print(t)
    if r.revoked:
        t = Table(title="通过后撤销: withdrawn in the OA system after it was archived (reverse its voucher)")
        for col in ("档号", "审批单号", "申请人", "入账凭证"):
            t.add_column(col, no_wrap=col != "档号")
        for a in r.revoked:
            t.add_row(a.code, a.number, a.applicant, a.voucher or "")
        console.print(t)
    for problem in r.problems:
        console.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
    if not r.unbooked and not r.unapproved and not r.revoked and not r.problems:
        console.print("[green]every approval is booked and every reimbursed expense approved[/green]")
    console.print(f"  report: {path}", soft_wrap=True, highlight=False)
