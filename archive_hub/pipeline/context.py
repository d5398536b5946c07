"""Everything a step needs, rebuilt from (source id, run id) so Airflow tasks pass only those two."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from archive_hub.catalog import Catalog
from archive_hub.catalog.invoice_backfill import claim_archived_invoices
from archive_hub.settings import Settings
from archive_hub.sources import SourceConfig, build_stream, find_source
from canonical_model.archival_code import ArchivalCodeRule
from connectors.stream import Stream
from mappings import Mapping, load_mapping

Progress = Callable[[str, int, int | None], None]  # (phase, advance, total)


def _noop(_phase: str, _advance: int, _total: int | None) -> None:
    return None


def run_dir_name(run_id: str) -> str:
    """The folder name of a run (Airflow run ids hold ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", run_id)


@dataclass
class RunContext:
    source: SourceConfig
    run_id: str
    settings: Settings
    catalog: Catalog
    progress: Progress = field(default=_noop)
    code_rule: ArchivalCodeRule = field(default_factory=ArchivalCodeRule)
    from_start: bool = False  # extract ignores the cursor and reads the source whole (`sync --full`)

    @classmethod
    def open(
        cls,
        source_id: str,
        run_id: str,
        settings: Settings | None = None,
        progress: Progress | None = None,
        from_start: bool = False,
    ) -> RunContext:
        settings = settings or Settings.from_env()
        catalog = Catalog(settings.catalog_url)
        catalog.create_schema()
        claim_archived_invoices(catalog, settings.archive_root)  # owed only by a catalog from before them
        return cls(
            find_source(source_id, settings),
            run_id,
            settings,
            catalog,
            progress or _noop,
            from_start=from_start,
        )

    @property
    def run_dir(self) -> Path:
        path = self.settings.runs_root / self.source.id / run_dir_name(self.run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def stream(self) -> Stream:
        return build_stream(self.source)

    @cached_property
    def mapping(self) -> Mapping:
        return load_mapping(self.source.mapping_path)

    def close(self) -> None:
        self.catalog.dispose()
