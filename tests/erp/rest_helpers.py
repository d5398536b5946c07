"""What the REST ERP tests share: a stream built from a shipped config/sources file with its environment,
and the peers' control routes."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from archive_hub.sources import build_stream, load_source
from connectors.erp.rest import RestVoucherStream
from connectors.erp.sample_erp.seed import seed_sample_erp
from tests.oa.peer_process import stop_peer


def rest_stream(config: Path, env: dict[str, str], work: Path, **overrides: object) -> RestVoucherStream:
    """The source `config` as the hub builds it, with `env` set only while it is read (secrets are
    expanded at load time), files kept under `work`, and `connection` settings overridden; fast retries."""
    env = {**env, "ARCHIVE_HUB_HOME": str(work)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        source = load_source(config)
        source.connection.update(overrides)
        stream = build_stream(source)
    finally:
        for k, value in saved.items():
            if value is None:
                os.environ.pop(k)
            else:
                os.environ[k] = value
    assert isinstance(stream, RestVoucherStream)
    stream.http.backoff = 0.01
    return stream


def peer_post(url: str, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def peer_stats(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url + "/_peer/stats", timeout=10) as answer:
        return json.loads(answer.read())


def books_behind_peer(
    data: Path, run_peer: Callable[[Path, Path], tuple[object, str]], vouchers: int = 90
) -> Iterator[tuple[Path, str]]:
    """The sample books (`vouchers`, plus the planted defects) seeded into `data` and served by a peer
    process for as long as the generator is open; yields (data folder, peer URL)."""
    seed_sample_erp(f"sqlite:///{data / 'erp.sqlite'}", data / "attachments", vouchers=vouchers)
    process, url = run_peer(data, data / "peer.log")
    try:
        yield data, url
    finally:
        stop_peer(process)  # type: ignore[arg-type]
