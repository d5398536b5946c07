"""`archive-hub bank ...`: read a bank statement file and print its canonical form as JSON.

Why a CLI of its own: operations and integration engineers need to try a bank's file before wiring a
connector. Output is one JSON object on stdout; a refusal is one line on stderr and a non-zero exit,
never a traceback, so scripts and people can both act on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

bank_app = typer.Typer(help="Bank statements: parse and check.", no_args_is_help=True, add_completion=False)

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


if __name__ == "__main__":
    bank_app()
