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

from archive_hub.pipeline.extract import extracted_row
from archive_hub.pipeline.jsonl import dumps
from archive_hub.pipeline.transform import map_lines
from archive_hub.quality.gate import check_batch, facts_of
from archive_hub.settings import Settings
from archive_hub.sources import build_stream, find_source
from canonical_model.record import ArchiveRecord
from connectors.stream import SourceRecord
from mappings import load_mapping


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
    records: list[SourceRecord] = []
    for batch in stream.read(None, lookback=dt.timedelta(0), batch_size=sample):
        records += batch[: sample - len(records)]
        if len(records) >= sample:
            break
    report.read = len(records)
    # The steps' own code: the same extracted lines, map_lines and the gate, only without files.
    mapped, refused = map_lines(mapping, config.context(), [dumps(extracted_row(r)) for r in records])
    report.problems += [f"record {key}: {reason}" for key, _stage, reason, _raw in refused]
    if mapped:
        report.example = json.loads(mapped[0])
        accepted, rejected, _ = check_batch([facts_of(ArchiveRecord.model_validate_json(m)) for m in mapped])
        report.mapped = len(accepted)
        report.problems += [f"record {r.record_key}: {r.reason}" for r in rejected]
    return report
