"""Transform: apply the source's YAML mapping; records that cannot be mapped go to quarantine.

Large runs are mapped in forked workers, chunk by chunk, and written in source order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from archive_hub.catalog import quarantine
from archive_hub.catalog.quarantine import QuarantineEntry
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import dumps, read_raw_lines, write_raw_lines
from archive_hub.pipeline.parallel import chunked, default_workers, ordered_map, worth_forking
from mappings import Mapping, MappingError

CHUNK = 500  # records per work unit


# (key, stage, reason, raw payload) of a record that is quarantined instead of mapped
Refusal = tuple[str, str, str, str]


def map_chunk(state: tuple[Mapping, dict[str, Any]], lines: list[str]) -> tuple[list[str], list[Refusal]]:
    """Map extracted lines to ArchiveRecord JSON lines; the refused ones come back with their reason."""
    mapping, context = state
    mapped: list[str] = []
    refused: list[Refusal] = []
    for line in lines:
        item = json.loads(line)
        data = item["data"]
        said = data.get("_refused") if isinstance(data, dict) else None
        if said:  # the connector refused the record itself (e.g. a malformed bank file): say why
            refused.append((item["key"], "extract", str(said), dumps(data)))
            continue
        try:
            record = mapping.apply(data, item["key"], context)
        except MappingError as exc:
            refused.append((item["key"], "map", str(exc), dumps(data)))
            continue
        mapped.append(record.model_dump_json())
    return mapped, refused


def transform(ctx: RunContext) -> dict[str, Any]:
    mapping = ctx.mapping
    source = ctx.run_dir / "extracted.jsonl"
    parallel = worth_forking(source.stat().st_size)
    if parallel:
        ctx.catalog.dispose()  # no pooled connection may cross a fork
    rejected: list[QuarantineEntry] = []

    def rows() -> Iterator[str]:
        results = ordered_map(
            map_chunk,
            (mapping, ctx.source.context()),
            chunked(read_raw_lines(source), CHUNK),
            parallel=parallel,
        )
        for mapped, refused in results:
            for key, stage, reason, raw in refused:
                rejected.append(
                    QuarantineEntry(ctx.source.id, ctx.stream.name, key, stage, reason, raw, mapping.label)
                )
            yield from mapped

    mapped = write_raw_lines(ctx.run_dir / "mapped.jsonl", rows())  # one ArchiveRecord JSON per line
    with ctx.catalog.transaction() as session:
        new_problems = quarantine.put(session, ctx.run_id, rejected)
    return {
        "step": "map",
        "mapping": mapping.label,
        "mapped": mapped,
        "quarantined": len(rejected),
        "quarantined_new": new_problems,
        "workers": default_workers() if parallel else 1,
    }
