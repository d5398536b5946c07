"""What every `archive-hub` command group shares: the two consoles and opening the catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from archive_hub.settings import Settings

if TYPE_CHECKING:
    from archive_hub.catalog import Catalog

console = Console()
err = Console(stderr=True)  # refusals and problems, so stdout stays the result


def open_catalog() -> Catalog:
    """The configured catalog, its tables created or upgraded (imported late: `--help` stays fast)."""
    from archive_hub.catalog import Catalog

    catalog = Catalog(Settings.from_env().catalog_url)
    catalog.create_schema()
    return catalog
