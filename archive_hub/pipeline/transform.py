"""Transform: apply the source's YAML mapping; records that cannot be mapped go to quarantine."""

from __future__ import annotations

from typing import Any

from archive_hub.catalog import quarantine
from archive_hub.catalog.quarantine import QuarantineEntry
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import dumps, read_lines, write_raw_lines
from mappings import MappingError


def transform(ctx: RunContext) -> dict[str, Any]:
    mapping = ctx.mapping
    context = ctx.source.context()
    rejected: list[QuarantineEntry] = []

    def rows():
        for item in read_lines(ctx.run_dir / "extracted.jsonl"):
            refused = item["data"].get("_refused") if isinstance(item["data"], dict) else None
            if refused:  # the connector refused the record itself (e.g. a malformed bank file): say why
                rejected.append(
                    QuarantineEntry(
                        ctx.source.id,
                        ctx.stream.name,
                        item["key"],
                        "extract",
                        str(refused),
                        dumps(item["data"]),
                        mapping.label,
                    )
                )
                continue
            try:
                record = mapping.apply(item["data"], item["key"], context)
            except MappingError as exc:
                rejected.append(
                    QuarantineEntry(
                        ctx.source.id,
                        ctx.stream.name,
                        item["key"],
                        "map",
                        str(exc),
                        dumps(item["data"]),
                        mapping.label,
                    )
                )
                continue
            yield record.model_dump_json()

    mapped = write_raw_lines(ctx.run_dir / "mapped.jsonl", rows())  # one ArchiveRecord JSON per line
    with ctx.catalog.transaction() as session:
        new_problems = quarantine.put(session, ctx.run_id, rejected)
    return {
        "step": "map",
        "mapping": mapping.label,
        "mapped": mapped,
        "quarantined": len(rejected),
        "quarantined_new": new_problems,
    }
