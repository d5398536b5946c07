"""`archive-hub check <source>`: can this source be archived, before the first sync (Airbyte's `check`).

Loads the source file, asks the connector to check its connection, loads the mapping, then reads the
first records and maps them and runs the quality gate on them (pydantic, the Great Expectations suite,
unique 凭证号 within the sample) as a sync would, without touching the catalog or the archive, so
numbers already archived are not compared. What an integration engineer needs while writing a source
file and its mapping: every setting or field that is wrong is named, with the record it failed on.
(The bank inbox keeps its usual working copy of each file it reads, as a sync would.)
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from pydantic import ValidationError

from archive_hub.quality.gate import RecordFacts, check_batch, facts_of
from archive_hub.settings import Settings
from archive_hub.sources import build_stream, find_source
from canonical_model.record import ArchiveRecord
from mappings import MappingError, load_mapping


@dataclass
class CheckReport:
    source: str
    kind: str
    mapping: str = ""
    read: int = 0
    mapped: int = 0  # mapped and passed the quality gate
    problems: list[str] = field(default_factory=list)  # "record <key>: <reason>"
    example: dict | None = None  # the first record as it would be archived

    @property
    def ok(self) -> bool:
        return not self.problems


def check_source(source_id: str, sample: int = 20, settings: Settings | None = None) -> CheckReport:
    """Raises ConfigError / SourceError / MappingConfigError for the source as a whole; collects per record."""
    config = find_source(source_id, settings)
    report = CheckReport(config.id, config.kind)
    stream = build_stream(config)
    stream.check()
    mapping = load_mapping(config.mapping_path)
    report.mapping = mapping.label
    context = config.context()
    facts: list[RecordFacts] = []
    for batch in stream.read(None, lookback=dt.timedelta(0), batch_size=sample):
        for record in batch[: sample - report.read]:
            report.read += 1
            refused = record.data.get("_refused") if isinstance(record.data, dict) else None
            if refused:
                report.problems.append(f"record {record.key}: {refused}")
                continue
            try:
                mapped = mapping.apply(record.data, record.key, context)
                ArchiveRecord.model_validate_json(mapped.model_dump_json())  # what validate will read
            except (MappingError, ValidationError) as exc:
                report.problems.append(f"record {record.key}: {exc}")
                continue
            facts.append(facts_of(mapped))
            if report.example is None:
                report.example = json.loads(mapped.model_dump_json())
        if report.read >= sample:
            break
    if facts:
        accepted, rejected, _ = check_batch(facts)
        report.mapped = len(accepted)
        report.problems += [f"record {r.record_key}: {r.reason}" for r in rejected]
    return report
