"""The quality gate every batch passes before it is archived: rules with reasons plus a GX suite."""

from archive_hub.quality.gate import Rejection, check_batch

__all__ = ["Rejection", "check_batch"]
