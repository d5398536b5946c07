"""Explicit failure classes (after Airbyte CDK's failure types) so a run knows whether to retry.

- ConfigError: wrong settings; fail at once, naming the setting.
- TransientSourceError: 429/5xx/timeouts; retried per page with backoff.
- SourceError: the source answered but cannot be used (schema drift, bad signature).
- RecordError: one record is bad; it goes to quarantine and the run goes on.
"""

from __future__ import annotations


class ConnectorError(Exception):
    failure_type = "system_error"


class ConfigError(ConnectorError):
    failure_type = "config_error"

    def __init__(self, source: str, setting: str, reason: str) -> None:
        super().__init__(f"{source}: setting {setting!r}: {reason}")
        self.source, self.setting, self.reason = source, setting, reason


class TransientSourceError(ConnectorError):
    failure_type = "transient_error"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceError(ConnectorError):
    pass


class RecordError(ConnectorError):
    """A single record failed; `stage` says where (map/validate/archive)."""

    failure_type = "record_error"

    def __init__(self, source: str, record_id: str, stage: str, reason: str) -> None:
        super().__init__(f"{source}: record {record_id}: {stage}: {reason}")
        self.source, self.record_id, self.stage, self.reason = source, record_id, stage, reason
