"""Declarative, versioned YAML mappings from source records to the canonical model."""

from mappings.engine import Mapping, MappingConfigError, MappingError, load_mapping

__all__ = ["Mapping", "MappingConfigError", "MappingError", "load_mapping"]
