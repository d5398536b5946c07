"""What every `archive-hub` command group shares: the two consoles and opening the catalog."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from archive_hub.settings import Settings

if TYPE_CHECKING:
    from archive_hub.catalog import Catalog

T = TypeVar("T")
console = Console()
# Refusals and problems, so stdout stays the result. Never hard-wrapped: a path or 档号 broken over two lines
# cannot be copied, and a test looking for a phrase failed when a long temp path pushed it across a line.
err = Console(stderr=True, soft_wrap=True)


def open_catalog() -> Catalog:
    """The configured catalog, its tables created or upgraded (imported late: `--help` stays fast)."""
    from archive_hub.catalog import Catalog

    catalog = Catalog(Settings.from_env().catalog_url)
    catalog.create_schema()
    return catalog


def new_progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def with_progress(description: str, work: Callable[[Callable[[int, int], None]], T]) -> T:
    """Run `work`, handing it the callback (done, total) that moves one progress bar."""
    with new_progress() as progress:
        task = progress.add_task(description, total=None)
        return work(lambda n, total: progress.update(task, advance=n, total=total))


def archive_registers_now(catalog: Catalog, registers: dict[str, str], term: str) -> None:
    """Archive registers that just became final (key → what to call it; archive_hub/registers.py, one sync
    for all) and say under which 档号; a failure leaves the act itself standing and the registers to the
    registers source's next run (exit 1)."""
    from archive_hub.registers import REGISTERS_KIND, archive_registers

    if not registers:
        return
    try:
        codes = archive_registers(catalog, list(registers))
    except Exception as exc:
        err.print(
            f"[red]{', '.join(registers.values())} not archived yet[/red] (the registers source's next run "
            f"archives it): {exc}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    for key, what in registers.items():
        console.print(
            f"{what} archived {term} as {codes[key]}"
            if codes[key]
            else f"no source of kind {REGISTERS_KIND} is configured: {what} is kept in the catalog only",
            highlight=False,
            soft_wrap=True,
        )
