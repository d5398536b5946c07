"""Transform: apply the source's YAML mapping; records that cannot be mapped go to quarantine.

Large runs are mapped in forked workers. Each worker reads its own byte span of extracted.jsonl and
writes its own part file, so only offsets and refusals cross between processes; the parts are then
joined in source order. (Shipping the lines through the pool cost the parent 0.027 ms a voucher.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from archive_hub.catalog import quarantine
from archive_hub.catalog.quarantine import QuarantineEntry
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import byte_spans, dumps, join_files, read_span_lines, write_raw_lines
from archive_hub.pipeline.parallel import default_workers, ordered_map, worth_forking
from mappings import Mapping, MappingError

CHUNK_BYTES = 1_000_000  # bytes of extracted.jsonl per work unit (about 500 vouchers)


# (key, stage, reason, raw payload) of a record that is quarantined instead of mapped
Refusal = tuple[str, str, str, str]


def map_lines(mapping: Mapping, context: dict[str, Any], lines: list[str]) -> tuple[list[str], list[Refusal]]:
    """Map extracted lines to ArchiveRecord JSON lines; the refused ones come back with their reason."""
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


def map_part(
    state: tuple[Mapping, dict[str, Any], Path], task: tuple[int, int, Path]
) -> tuple[int, list[Refusal]]:
    """Map one byte span of extracted.jsonl into its own part file; return the count and the refusals."""
    mapping, context, source = state
    start, end, part = task
    mapped, refused = map_lines(mapping, context, read_span_lines(source, start, end))
    write_raw_lines(part, mapped, durable=False)  # joined into mapped.jsonl, which is made durable
    return len(mapped), refused


def transform(ctx: RunContext) -> dict[str, Any]:
    mapping = ctx.mapping
    source = ctx.run_dir / "extracted.jsonl"
    parallel = worth_forking(source.stat().st_size)
    if parallel:
        ctx.catalog.dispose()  # no pooled connection may cross a fork
    parts_dir = ctx.run_dir / "map-parts"
    shutil.rmtree(parts_dir, ignore_errors=True)  # a crashed run's leftovers
    parts_dir.mkdir()
    tasks = [
        (start, end, parts_dir / f"{index:05d}.jsonl")
        for index, (start, end) in enumerate(byte_spans(source, CHUNK_BYTES))
    ]
    rejected: list[QuarantineEntry] = []
    mapped = 0
    for count, refused in ordered_map(
        map_part, (mapping, ctx.source.context(), source), tasks, parallel=parallel
    ):
        mapped += count
        for key, stage, reason, raw in refused:
            rejected.append(
                QuarantineEntry(ctx.source.id, ctx.stream.name, key, stage, reason, raw, mapping.label)
            )
    join_files([part for _, _, part in tasks], ctx.run_dir / "mapped.jsonl")  # one ArchiveRecord JSON a line
    shutil.rmtree(parts_dir)
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
