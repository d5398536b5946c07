"""`archive-hub bank ...`: read a bank statement file and print its canonical form as JSON.

Why a CLI of its own: operations and integration engineers need to try a bank's file before wiring a
connector. Output is one JSON object on stdout; a refusal is one line on stderr and a non-zero exit,
never a traceback, so scripts and people can both act on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from archive_hub.bank_reconciliation import BankReconciliation
    from archive_hub.catalog import Catalog

bank_app = typer.Typer(
    help="Bank statements: parse and check; reconcile the bank against the books.",
    no_args_is_help=True,
    add_completion=False,
)

EXIT_REFUSED = 2
EXIT_IO = 3


@bank_app.callback()
def _main() -> None:
    """Bank statements (银行对账单): MT940/MT942, camt.052/053/054, OFX, BAI2, Chinese bank CSV/XLSX."""


@bank_app.command("parse")
def parse_cmd(
    file: Annotated[Path, typer.Argument(help="statement file to read")],
    format: Annotated[str, typer.Option("--format", "-f", help="auto|mt940|camt|ofx|bai2|cn-csv")] = "auto",
    layout: Annotated[
        str | None, typer.Option("--layout", help="Chinese export layout: icbc, cmb, ccb or a YAML path")
    ] = None,
) -> None:
    """Print {"statements": [...]} with balances, balance_check and entries (amounts signed, debit negative)."""
    from connectors.bank import checks, detect  # late: every other command starts without the parsers
    from connectors.bank.errors import StatementError

    try:
        data = file.read_bytes()
    except OSError as e:
        typer.echo(f"{file}: cannot read: {e.strerror or e}", err=True)
        raise typer.Exit(EXIT_IO) from None
    try:
        statements = detect.parse(data, source=str(file), fmt=format, layout=layout)
    except StatementError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except Exception as e:  # last wall: a bug must still be one line naming the file, not a traceback
        typer.echo(f"{file}: internal error while parsing: {type(e).__name__}: {e}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    findings = checks.sequence_check(statements)
    out = {
        "file": str(file),
        "sha256": checks.file_fingerprint(data),
        "statements": [
            {**s.to_json_dict(), "fingerprint": checks.statement_fingerprint(s)} for s in statements
        ],
        "sequence_findings": [f.message for f in findings],
        "duplicate_statements": [
            f"{b.position} repeats {a.position}" for a, b in checks.duplicate_statements(statements)
        ],
    }
    sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")


@bank_app.command("reconcile")
def reconcile_cmd(
    account: Annotated[
        str | None, typer.Argument(help="bank account as in config/bank_accounts.yaml; all when omitted")
    ] = None,
    on: Annotated[
        str | None,
        typer.Option("--on", help="the day of the table (default: the last statement's closing day)"),
    ] = None,
    month_ends: Annotated[
        bool, typer.Option("--month-ends", help="one table for each month end the statements cover (月末)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the tables as JSON")] = False,
    xlsx: Annotated[
        Path | None, typer.Option("--xlsx", help="also write the tables as an Excel workbook")
    ] = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="keep each balanced table and archive it as a record (附表一: 10年)"),
    ] = False,
    by: Annotated[str | None, typer.Option("--by", help="编制人: who draws up the tables kept")] = None,
) -> None:
    """银行存款余额调节表 from the archive: archived statements against archived vouchers, with every 未达账项."""
    import datetime as dt

    from archive_hub.bank_accounts import load_bank_accounts
    from archive_hub.bank_reconciliation import default_day, reconcile_bank
    from archive_hub.bank_reconciliation import month_ends as month_ends_of
    from archive_hub.cli_common import err, open_catalog
    from connectors.errors import ConfigError

    try:
        accounts = load_bank_accounts()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_REFUSED) from None
    chosen = [a for a in accounts if account in (None, a.account)]
    if not chosen:
        known = ", ".join(a.account for a in accounts) or "none"
        err.print(f"[red]no bank account {account or ''} in config/bank_accounts.yaml (known: {known})[/red]")
        raise typer.Exit(EXIT_REFUSED)
    try:
        day = dt.date.fromisoformat(on) if on else None
    except ValueError:
        err.print(f"[red]--on {on}: not a date (YYYY-MM-DD)[/red]", highlight=False)
        raise typer.Exit(EXIT_REFUSED) from None
    if day and month_ends:
        err.print("[red]--on and --month-ends: say one day, or every month end[/red]")
        raise typer.Exit(EXIT_REFUSED)
    if keep and not (by or "").strip():
        err.print("[red]--keep needs --by: a kept 调节表 names who drew it up (编制人)[/red]")
        raise typer.Exit(EXIT_REFUSED)
    catalog = open_catalog()
    reports = []
    with catalog.reading() as session:
        for acct in chosen:
            last = day or default_day(session, acct)
            if last is None:
                err.print(f"[red]{acct.account}: no archived statement yet, and no --on given[/red]")
                raise typer.Exit(EXIT_REFUSED)
            days = month_ends_of(acct, last) if month_ends else [last]
            if not days:
                err.print(
                    f"[yellow]{acct.account}: the statements cover no month end yet (they end {last})[/yellow]"
                )
            try:
                reports += [reconcile_bank(session, acct, d) for d in days]
            except ValueError as exc:
                err.print(f"[red]{exc}[/red]", highlight=False)
                raise typer.Exit(EXIT_REFUSED) from None
    if as_json:
        sys.stdout.write(json.dumps([r.as_dict() for r in reports], ensure_ascii=False, indent=2) + "\n")
    else:
        from archive_hub.bank_reconciliation_view import print_report

        for report in reports:
            print_report(report)
    if xlsx is not None:
        from archive_hub.bank_reconciliation_view import write_xlsx

        try:
            typer.echo(f"workbook: {write_xlsx(reports, xlsx)}")
        except OSError as exc:
            err.print(f"[red]cannot write the workbook {xlsx}: {exc.strerror or exc}[/red]", highlight=False)
            raise typer.Exit(EXIT_REFUSED) from None
    if keep:
        _keep_and_archive(catalog, reports, (by or "").strip())
    if not all(r.balanced for r in reports):
        raise typer.Exit(4)


def _keep_and_archive(catalog: Catalog, reports: list[BankReconciliation], by: str) -> None:
    from archive_hub.bank_reconciliation_record import keep
    from archive_hub.cli_common import archive_registers_now, err

    kept = {}
    for report in reports:
        try:
            with catalog.transaction() as session:
                kept[keep(session, report, by)] = f"银行存款余额调节表 {report.account.account} {report.on}"
        except ValueError as exc:
            err.print(f"[yellow]{exc}[/yellow]", highlight=False)
    archive_registers_now(catalog, kept, "10年")


if __name__ == "__main__":
    bank_app()
