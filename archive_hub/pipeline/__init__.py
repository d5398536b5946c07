"""The sync pipeline, one module per step: extract → transform (map) → validate → archive → finalize.

Steps hand each other files in the run directory (var/runs/<source>/<run id>/), never big XCom
payloads; each returns a small JSON summary. Each step can be re-run on its own: outputs are
written to a temporary name and renamed, and the archive step is idempotent.
"""

from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.runner import STEPS, run_step, run_sync

__all__ = ["STEPS", "RunContext", "run_step", "run_sync"]
