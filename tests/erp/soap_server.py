"""The local SOAP ERP (connectors.erp.soap_peer) as a real process over a seeded sample ERP."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.erp.soap import SERVICE_PATH, SoapVoucherStream
from tests.oa.peer_process import start_peer, stop_peer

SECRET_ENV = "ARCHIVE_HUB_TEST_SOAP_PASSWORD"
USER, DATA_CENTER = "archive", "DC01"
NO_FAULTS = {
    "unavailable_next": 0,
    "server_fault_next": 0,
    "malformed_next": 0,
    "doctype_next": 0,
    "session_expired_next": 0,
}


@dataclass
class SoapPeer:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    password: str

    @property
    def url(self) -> str:
        """The service endpoint: what connection.url names."""
        return self.base_url + SERVICE_PATH

    def faults(self, **spec: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base_url + "/_peer/faults", data=json.dumps(spec).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/_peer/stats", timeout=5) as answer:
            return json.loads(answer.read())

    def stream(self, work_dir: Path, *, password: str | None = None, **kwargs: Any) -> SoapVoucherStream:
        """A stream on this peer; no real sleeping between retries unless `sleep` is given."""
        kwargs.setdefault("sleep", lambda seconds: None)
        return SoapVoucherStream(
            "erp_soap_test",
            kwargs.pop("url", self.url),
            kwargs.pop("user", USER),
            self.password if password is None else password,
            kwargs.pop("data_center", DATA_CENTER),
            work_dir,
            **kwargs,
        )


@contextmanager
def running_soap_peer(erp_file: Path, log: Path, *, password: str) -> Iterator[SoapPeer]:
    """`python -m connectors.erp.soap_peer --data <erp_file>` (attachments beside it), the password in
    the environment only."""
    process, base_url = start_peer(
        "connectors.erp.soap_peer",
        ["--data", str(erp_file), "--user", USER, "--data-center", DATA_CENTER],
        log,
        secret_env=SECRET_ENV,
        secret=password,
    )
    try:
        yield SoapPeer(process, base_url, log, password)
    finally:
        stop_peer(process)
