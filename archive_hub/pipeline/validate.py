"""Validate: pydantic re-validation, the GX suite and catalog-wide voucher-number uniqueness."""

from __future__ import annotations

from typing import Any

from archive_hub.catalog import quarantine
from archive_hub.catalog.quarantine import QuarantineEntry
from archive_hub.catalog.records import archived_voucher_numbers
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.jsonl import dumps, read_lines, read_raw_lines, write_raw_lines
from archive_hub.pipeline.parallel import chunked, default_workers, ordered_map, worth_forking
from archive_hub.quality import check_batch
from archive_hub.quality.gate import RecordFacts, facts_of
from canonical_model.record import ArchiveRecord

CHUNK = 500  # records per work unit


def raw_payloads(ctx: RunContext, keys: set[str]) -> dict[str, str]:
    """The source bytes of the given records, as extracted (quarantine keeps what the source said)."""
    found: dict[str, str] = {}
    if keys:
        for item in read_lines(ctx.run_dir / "extracted.jsonl"):
            if item["key"] in keys:
                found[item["key"]] = dumps(item["data"])
    return found


def facts_chunk(_state: None, lines: list[str]) -> list[RecordFacts]:
    """Parse mapped lines into the facts the gate checks (pydantic re-validation happens here)."""
    return [facts_of(ArchiveRecord.model_validate_json(line)) for line in lines]


def validate(ctx: RunContext) -> dict[str, Any]:
    source = ctx.run_dir / "mapped.jsonl"
    lines = list(read_raw_lines(source))
    parallel = worth_forking(source.stat().st_size)
    if parallel:
        ctx.catalog.dispose()  # no pooled connection may cross a fork
    parts = ordered_map(facts_chunk, None, chunked(lines, CHUNK), parallel=parallel)
    records = [f for part in parts for f in part]
    numbers = {
        (r.voucher.book_code, r.voucher.fiscal_year, r.voucher.period, r.voucher.number)
        for r in records
        if r.voucher is not None and r.voucher.number
    }
    with ctx.catalog.reading() as session:
        taken = archived_voucher_numbers(session, ctx.source.id, numbers)
    accepted, rejected, summary = check_batch(records, taken)
    ctx.progress("validate", len(records), len(records))
    raw = raw_payloads(ctx, {r.record_key for r in rejected})
    entries = [
        QuarantineEntry(
            ctx.source.id,
            ctx.stream.name,
            r.record_key,
            "validate",
            r.reason,
            raw.get(r.record_key, "{}"),
            ctx.mapping.label,
        )
        for r in rejected
    ]
    with ctx.catalog.transaction() as session:
        new_problems = quarantine.put(session, ctx.run_id, entries)
    valid = write_raw_lines(
        ctx.run_dir / "valid.jsonl",
        (line for line, record in zip(lines, records, strict=True) if record.key in accepted),
    )
    return {
        "step": "validate",
        "valid": valid,
        "quarantined": len(entries),
        "quarantined_new": new_problems,
        "workers": default_workers() if parallel else 1,
        **summary,
    }
