"""Placeholder for `archive-hub bank`; the bank statement parsers replace it."""

import typer

bank_app = typer.Typer(help="Bank statements: parse and check.")
