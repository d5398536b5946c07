"""Source configuration files (config/sources/*.yaml) and the registry that turns them into streams."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archive_hub.settings import PROJECT_ROOT, Settings, expand_env
from connectors.errors import ConfigError
from connectors.stream import Stream


class FondsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fonds_no: str = Field(pattern=r"^[A-Za-z0-9]+$")
    fonds_name: str


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: str
    system: str
    description: str = ""
    connection: dict[str, Any]
    mapping: str
    fonds: FondsConfig
    batch_size: int = Field(default=500, ge=1, le=100_000)
    lookback_seconds: int = Field(default=300, ge=0)
    quarantine_threshold: float = Field(default=0.05, ge=0, le=1)
    schedule: str | None = None
    # quarantine: a record carrying a file (SHA-256) another record is archived with is refused, 财会〔2020〕6号;
    # allow: for sources whose records rightly share files (one contract behind several payments).
    duplicate_attachments: Literal["quarantine", "allow"] = "quarantine"
    path: Path | None = None

    @property
    def lookback(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.lookback_seconds)

    @property
    def mapping_path(self) -> Path:
        path = Path(self.mapping)
        return path if path.is_absolute() else PROJECT_ROOT / path

    def context(self) -> dict[str, Any]:
        return {
            "source_id": self.id,
            "system": self.system,
            "fonds_no": self.fonds.fonds_no,
            "fonds_name": self.fonds.fonds_name,
        }


def refuse_unknown_settings(config: SourceConfig, known: set[str] | frozenset[str]) -> None:
    """A connection setting the connector does not read is a typo until proven otherwise: fail naming it."""
    unknown = sorted(set(config.connection) - set(known))
    if unknown:
        raise ConfigError(
            config.id, f"connection.{unknown[0]}", f"unknown setting (known: {', '.join(sorted(known))})"
        )


def load_source(path: Path, settings: Settings | None = None) -> SourceConfig:
    settings = settings or Settings.from_env()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(path.stem, str(path), f"cannot read: {exc}") from None
    extra = {"ARCHIVE_HUB_HOME": str(settings.home)}

    def expand(value: Any, where: str) -> Any:
        if isinstance(value, str):
            try:
                return expand_env(value, extra)
            except KeyError as exc:
                raise ConfigError(path.stem, where, f"{exc.args[0]} (in {path})") from None
        if isinstance(value, dict):
            return {k: expand(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    try:
        return SourceConfig.model_validate({**expand(doc, ""), "path": path})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(
            path.stem, ".".join(str(p) for p in err["loc"]), f"{err['msg']} (in {path})"
        ) from None


def source_files(settings: Settings | None = None) -> list[Path]:
    settings = settings or Settings.from_env()
    return sorted(settings.sources_dir.glob("*.yaml"))


def find_source(source_id: str, settings: Settings | None = None) -> SourceConfig:
    settings = settings or Settings.from_env()
    for path in source_files(settings):
        if path.stem == source_id:
            return load_source(path, settings)
    known = ", ".join(p.stem for p in source_files(settings)) or "none"
    raise ConfigError(source_id, "source", f"no config/sources/{source_id}.yaml (known: {known})")


StreamFactory = Callable[[SourceConfig], Stream]
_FACTORIES: dict[str, StreamFactory] = {}


def register(kind: str) -> Callable[[StreamFactory], StreamFactory]:
    def deco(factory: StreamFactory) -> StreamFactory:
        _FACTORIES[kind] = factory
        return factory

    return deco


# Connectors that live in their own package register lazily: kind → "module:function(config)".
LAZY_FACTORIES = {
    "bank.inbox": "connectors.bank.inbox:stream_from_config",
    "hub.registers": "connectors.registers.hub_registers:stream_from_config",
    "oa.wecom": "connectors.oa.wecom:stream_from_config",
    "oa.dingtalk": "connectors.oa.dingtalk:stream_from_config",
    "oa.feishu": "connectors.oa.feishu:stream_from_config",
    "erp.soap": "connectors.erp.soap:stream_from_config",
    "erp.rest": "connectors.erp.rest:stream_from_config",
}


def build_stream(config: SourceConfig) -> Stream:
    if config.kind not in _FACTORIES and config.kind in LAZY_FACTORIES:
        import importlib

        module, _, name = LAZY_FACTORIES[config.kind].partition(":")
        return getattr(importlib.import_module(module), name)(config)
    if config.kind not in _FACTORIES:
        raise ConfigError(
            config.id,
            "kind",
            f"unknown connector kind {config.kind!r} (known: {', '.join(sorted(_FACTORIES))})",
        )
    return _FACTORIES[config.kind](config)


@register("erp.database")
def _erp_database(config: SourceConfig) -> Stream:
    from connectors.erp.database import DatabaseVoucherStream

    conn = config.connection
    if "url" not in conn:
        raise ConfigError(config.id, "connection.url", "is required")
    root = conn.get("attachment_root")
    return DatabaseVoucherStream(config.id, conn["url"], Path(root) if root else None, system=config.system)
