"""What the local vendor peers (OA: wecom, dingtalk, feishu; ERP: kingdee) share: a transfer dropped mid-way,
the test controls (/_peer/faults, /_peer/stats), and starting on a loopback port with the secret taken from
the environment (never the command line)."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send


class TruncatedResponse(Response):
    """Declares the full Content-Length, sends half the bytes and stops: uvicorn then closes the connection,
    which is what a transfer dropped mid-way looks like to the client."""

    def __init__(self, content: bytes, headers: Mapping[str, str]) -> None:
        super().__init__(content=b"", headers={**headers, "content-length": str(len(content))})
        self._partial = content[: len(content) // 2]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self._partial, "more_body": True})


def secret_and_data(name: str, secret_env: str, data: Path) -> str | None:
    """The secret from the named environment variable, once the data folder is known to exist; None (with
    one line on stderr) when either is missing."""
    secret = os.environ.get(secret_env, "")
    if not secret:
        print(f"{name}: environment variable {secret_env} is not set or empty", file=sys.stderr)
        return None
    if not data.is_dir():
        print(f"{name}: data folder {data} does not exist", file=sys.stderr)
        return None
    return secret


def serve_on_loopback(app: Any, port: int, name: str) -> int:
    """Bind first, then print the URL, then serve: the printed line is true the moment it appears, and port
    0 picks a free one. No access log: query strings carry tokens."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"{name} listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, access_log=False, log_level="warning", lifespan="off", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def add_peer_controls(
    app: FastAPI,
    apply_faults: Callable[[dict[str, Any]], dict[str, Any]],
    stats: Callable[[], dict[str, Any]],
) -> None:
    """POST /_peer/faults (a JSON object for `apply_faults`; its ValueError is a 400) and GET /_peer/stats,
    which tests use to inject failures and to count what the client did."""

    @app.post("/_peer/faults")
    async def set_faults(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            return JSONResponse(apply_faults(body))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/_peer/stats")
    async def peer_stats() -> Response:
        return JSONResponse(stats())


def add_call_counter(app: FastAPI, state: Any, name_of: Callable[[str], str]) -> None:
    """Count each vendor call in `state.calls` (by `name_of(path)`) and answer 503 while
    `state.unavailable_next` > 0, both under `state.lock`; the /_peer routes are neither counted nor failed."""

    @app.middleware("http")
    async def count_and_fail(request: Request, call_next: Any) -> Response:
        if not request.url.path.startswith("/_peer"):
            with state.lock:
                state.calls[name_of(request.url.path)] += 1
                if state.unavailable_next > 0:
                    state.unavailable_next -= 1
                    return Response("Service Unavailable", status_code=503)
        return await call_next(request)
