"""`archive-hub transfer ...`: 移交 of a fonds, a year or a class, with its 移交清册, and the receiver's check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from archive_hub.cli_common import archive_registers_now, console, err, with_progress
from archive_hub.cli_common import open_catalog as _catalog
from archive_hub.settings import Settings

transfer_app = typer.Typer(
    help="移交: hand records over, verified, with a 移交清册; check a transfer set as its receiver.",
    no_args_is_help=True,
)


@transfer_app.command("out")
def transfer_out_cmd(
    destination: Annotated[Path, typer.Argument(help="new folder for the transfer set (must not exist)")],
    code: Annotated[str, typer.Option("--code", help="what goes: 档号 prefix of a fonds, a year or a class")],
    to: Annotated[str, typer.Option("--to", help="接收单位")],
    handed_by: Annotated[str, typer.Option(help="移交人")],
    received_by: Annotated[str, typer.Option(help="接收人")],
    supervised_by: Annotated[str, typer.Option(help="监交人")],
) -> None:
    """Copy every version of the archived records under --code, each verified, with the 移交清册; registered."""
    from archive_hub.transfer import TransferRefused, transfer_out

    settings = Settings.from_env()
    catalog = _catalog()
    people = {"handed_by": handed_by, "received_by": received_by, "supervised_by": supervised_by}
    try:
        made = with_progress(
            "copying and verifying packages",
            lambda step: transfer_out(
                catalog,
                settings.archive_root,
                destination,
                settings.home / "registers" / "transfers",
                code_prefix=code,
                receiver=to,
                people=people,
                progress=step,
            ),
        )
    except TransferRefused as exc:
        for line in str(exc).splitlines():
            err.print(f"[red]refused:[/red] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {destination}: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(2) from None
    for _, _, line in made.settled:
        console.print(f"settled first: {line}", highlight=False, soft_wrap=True)
    console.print(
        f"移交 {made.transfer_id}: {made.records} 件, {made.packages} package version(s), {made.files} files, "
        f"{made.bytes / 1_048_576:.1f} MB to {to}, each verified: {made.path} (移交清册.xml SHA-256 "
        f"{made.register_sha256}); the receiver checks it with `archive-hub transfer check {made.path}`",
        highlight=False,
        soft_wrap=True,
    )
    numbers = [n for n, handed_over, _ in made.settled if handed_over] + [made.transfer_id]
    archive_registers_now(catalog, {f"移交清册-{n:04d}": f"移交清册 {n}" for n in numbers}, "30年")


@transfer_app.command("check")
def transfer_check_cmd(
    directory: Annotated[Path, typer.Argument(help="a transfer set: 移交清册.xml and archive/")],
) -> None:
    """The receiver's 四性检测: every package re-hashed against the 移交清册 alone; no catalog needed (exit 2 on a problem)."""
    from archive_hub.transfer import check_transfer

    report = check_transfer(directory)
    for problem in report.problems:
        err.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
    status = "[green]ok[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
    console.print(
        f"transfer set {directory}: {report.records} 件, {report.packages} package version(s), "
        f"{report.files} files checked against the 移交清册 (SHA-256 + SM3): {status}",
        soft_wrap=True,
    )
    if not report.ok:
        raise typer.Exit(2)


@transfer_app.command("list")
def transfer_list_cmd() -> None:
    """Every transfer: when, what, to whom, signed by whom."""
    from sqlalchemy import select

    from archive_hub.catalog.models import TransferRow

    with _catalog().reading() as session:
        rows = list(session.execute(select(TransferRow).order_by(TransferRow.id)).scalars())
    table = Table(title=f"{len(rows)} transfer(s) (移交)")
    for col in (
        "no.",
        "status",
        "scope",
        "接收单位",
        "件数",
        "移交人 / 接收人 / 监交人",
        "at",
        "destination",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.id),
            r.status,
            r.code_prefix,
            r.receiver,
            str(r.records),
            " / ".join(r.people.get(k, "") for k in ("handed_by", "received_by", "supervised_by")),
            f"{r.started_at:%Y-%m-%d %H:%M}",
            r.destination,
        )
    console.print(table)
