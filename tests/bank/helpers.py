"""Shared paths and a CLI runner for the bank tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / ".." / "shared" / "peers"
MT940_DIR = PEERS / "mt940"
CAMT_DIR = PEERS / "camt"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", "archive_hub.cli_bank", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
