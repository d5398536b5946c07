"""A small mapping engine: YAML spec → nested dict → pydantic canonical model.

Spec nodes (see erp_sample_voucher.yaml):
  "field.path"                      copy a source field (it must exist in the source record)
  {from: path, type: date, format: "%Y-%m-%d", default: x, required: true, map: {...}}
  {template: "记-{voucher_no}"}     str.format over the source record
  {const: value}
  {object: {...}, drop_empty: true} a free-form dict (e.g. 辅助核算), empty values dropped
  {each: path, fields: {...}}       a list, one item per element of a source list
  {any other keys}                  a nested object
Paths starting with `$context.` read run context (source id, fonds) instead of the record.

Every error names the mapping file, the target field, the source field and the record, because the
person who reads it is fixing either the mapping or the source data.
"""

from __future__ import annotations

import datetime as dt
import string
import types
import typing
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from canonical_model.record import ArchiveRecord

SPEC_KEYS = {
    "from",
    "template",
    "const",
    "each",
    "object",
    "type",
    "format",
    "default",
    "required",
    "map",
    "fields",
    "drop_empty",
}
TYPES = {"str", "int", "decimal", "date", "datetime", "bool"}
_MISSING = object()


class MappingConfigError(ValueError):
    """The mapping file itself is wrong (unknown target field, bad type)."""


class MappingError(ValueError):
    """One source record cannot be mapped; quarantined with this message."""

    def __init__(self, mapping_file: str, record_id: str, field: str, reason: str) -> None:
        super().__init__(f"mapping {mapping_file}: record {record_id}: field {field}: {reason}")
        self.mapping_file, self.record_id, self.field, self.reason = mapping_file, record_id, field, reason


@dataclass
class Mapping:
    name: str
    version: str
    path: Path
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def apply(self, source: dict[str, Any], record_id: str, context: dict[str, Any]) -> ArchiveRecord:
        trace: dict[str, str] = {}
        mapper = _Mapper(self.path.name, record_id, context, trace)
        data = mapper.node(self.spec, source, "")
        try:
            return ArchiveRecord.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            target = ".".join(str(p) for p in err["loc"])
            src = trace.get(_trace_key(err["loc"]))
            where = (
                f" (source field {src!r}"
                + (f" = {err.get('input')!r})" if err.get("input") is not None else " is empty)")
                if src
                else ""
            )
            more = f"; and {len(exc.errors()) - 1} more" if len(exc.errors()) > 1 else ""
            raise MappingError(self.path.name, record_id, target, f"{err['msg']}{where}{more}") from None


def _trace_key(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


class _Mapper:
    def __init__(
        self, mapping_file: str, record_id: str, context: dict[str, Any], trace: dict[str, str]
    ) -> None:
        self.file, self.record_id, self.context, self.trace = mapping_file, record_id, context, trace

    def fail(self, target: str, reason: str) -> MappingError:
        return MappingError(self.file, self.record_id, target or "<root>", reason)

    def lookup(self, path: str, source: dict[str, Any], target: str) -> Any:
        root: Any = self.context if path.startswith("$context.") else source
        parts = path.removeprefix("$context.").split(".")
        value = root
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                raise self.fail(target, f"source has no field {path!r}")
            value = value[part]
        self.trace[target] = path
        return value

    def node(self, spec: Any, source: dict[str, Any], target: str) -> Any:
        if isinstance(spec, str):
            return self.lookup(spec, source, target)
        if (
            isinstance(spec, dict)
            and spec
            and set(spec) <= SPEC_KEYS
            and ({"from", "template", "const", "each", "object"} & set(spec))
        ):
            return self.leaf(spec, source, target)
        if isinstance(spec, list):
            return [self.node(item, source, f"{target}.{i}") for i, item in enumerate(spec)]
        if isinstance(spec, dict):
            out = {}
            for key, sub in spec.items():
                value = self.node(sub, source, f"{target}.{key}" if target else key)
                out[key] = value
            return out
        return spec  # literal scalar

    def leaf(self, spec: dict[str, Any], source: dict[str, Any], target: str) -> Any:
        if "each" in spec:
            items = self.lookup(spec["each"], source, target)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise self.fail(target, f"source field {spec['each']!r} is not a list")
            result = []
            for index, item in enumerate(items):
                value = self.node(
                    spec.get("fields", {}),
                    {**source, **item} if isinstance(item, dict) else item,
                    f"{target}.{index}",
                )
                result.append(value)
            return result
        if "const" in spec:
            return spec["const"]
        if "object" in spec:
            obj = {key: self.node(sub, source, f"{target}.{key}") for key, sub in spec["object"].items()}
            if spec.get("drop_empty"):
                obj = {k: v for k, v in obj.items() if v not in (None, "")}
            return obj
        if "template" in spec:
            try:
                value: Any = string.Formatter().vformat(
                    spec["template"], (), _TemplateSource(source, self.context)
                )
            except KeyError as exc:
                raise self.fail(target, f"template refers to unknown source field {exc.args[0]!r}") from None
            except (ValueError, TypeError) as exc:
                raise self.fail(
                    target, f"template {spec['template']!r} cannot format this record: {exc}"
                ) from None
        else:
            value = self.lookup(spec["from"], source, target)
        if "map" in spec and value is not None:
            table = spec["map"]
            if value in table:
                value = table[value]
            elif "default" in spec:
                value = spec["default"]
            else:
                raise self.fail(
                    target, f"value {value!r} of {spec.get('from')!r} is not in the mapping table"
                )
        if value is None or value == "":
            if spec.get("required"):
                raise self.fail(
                    target, f"required value is missing (source field {spec.get('from')!r} is empty)"
                )
            if "default" in spec:
                return spec["default"]
            if value is None:
                return None
        if isinstance(value, dict) and spec.get("drop_empty"):
            return {k: v for k, v in value.items() if v not in (None, "")}
        return self.convert(value, spec.get("type"), spec.get("format"), target, spec.get("from"))

    def convert(self, value: Any, kind: str | None, fmt: str | None, target: str, src: str | None) -> Any:
        if kind is None:
            return value
        try:
            if kind == "str":
                return str(value)
            if kind == "int":
                return int(value)
            if kind == "bool":
                return (
                    value
                    if isinstance(value, bool)
                    else str(value).strip().lower() in {"1", "true", "yes", "y", "是"}
                )
            if kind == "decimal":
                return Decimal(str(value))
            if kind == "date":
                if isinstance(value, dt.date):
                    return value if not isinstance(value, dt.datetime) else value.date()
                return (
                    dt.datetime.strptime(str(value), fmt).date()
                    if fmt
                    else dt.date.fromisoformat(str(value)[:10])
                )
            if kind == "datetime":
                if isinstance(value, dt.datetime):
                    return value
                return dt.datetime.strptime(str(value), fmt) if fmt else dt.datetime.fromisoformat(str(value))
        except (ValueError, InvalidOperation, TypeError):
            raise self.fail(
                target,
                f"cannot read {value!r} from source field {src!r} as {kind}" + (f" ({fmt})" if fmt else ""),
            ) from None
        raise self.fail(target, f"unknown type {kind!r}")


class _TemplateSource(dict):
    def __init__(self, source: dict[str, Any], context: dict[str, Any]) -> None:
        super().__init__(source)
        self.context = context

    def __missing__(self, key: str) -> Any:
        if key == "context":
            return self.context
        raise KeyError(key)


def load_mapping(path: Path | str) -> Mapping:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingConfigError(f"mapping {path}: cannot read: {exc}") from None
    if not isinstance(doc, dict):
        raise MappingConfigError(f"mapping {path}: expected a mapping document")
    for key in ("name", "version", "record"):
        if key not in doc:
            raise MappingConfigError(f"mapping {path}: missing top-level key {key!r}")
    _check_targets(doc["record"], ArchiveRecord, path.name, "")
    return Mapping(str(doc["name"]), str(doc["version"]), path, doc["record"])


def _check_targets(spec: Any, model: Any, file: str, prefix: str) -> None:
    """Refuse a mapping that writes a field the canonical model does not have (typos caught at load)."""
    if not isinstance(spec, dict | list):
        return
    if isinstance(spec, list):
        for index, item in enumerate(spec):
            _check_targets(item, _item_type(model), file, f"{prefix}{index}.")
        return
    is_leaf = set(spec) <= SPEC_KEYS and ({"from", "template", "const", "each", "object"} & set(spec))
    if is_leaf:
        if "type" in spec and spec["type"] not in TYPES:
            raise MappingConfigError(f"mapping {file}: field {prefix}: unknown type {spec['type']!r}")
        if "each" in spec:
            _check_targets(spec.get("fields", {}), _item_type(model), file, prefix)
        return
    model = _model_of(model)
    if model is None:
        return  # free-form dict (e.g. auxiliary dimensions)
    for key, sub in spec.items():
        if key not in model.model_fields:
            raise MappingConfigError(
                f"mapping {file}: unknown target field {prefix + key!r} (not in {model.__name__})"
            )
        _check_targets(sub, model.model_fields[key].annotation, file, f"{prefix}{key}.")


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _item_type(annotation: Any) -> Any:
    for arg in typing.get_args(annotation) or ():
        inner = _item_type(arg) if typing.get_origin(arg) is not None else arg
        if _model_of(inner) is not None:
            return inner
    return None
