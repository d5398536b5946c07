"""Pytest plugin: a real Keycloak 26 (scripts/keycloak.sh: Maven artifact, dev mode, loopback) with the
archive-hub realm, and real access tokens from it.

Fixtures:
    keycloak_issuer  session-scoped issuer URL of the archive-hub realm. Starts Keycloak unless it is already
                     running (then it is left running); stops it at session end only if this session started it.
    kc_token         function returning a fresh access token for a demo user by role: "archivist"
                     (zhang.archivist), "auditor" (liu.auditor) or "clerk" (wang.clerk, no archive role),
                     obtained with the password grant of the public client archive-hub-cli.

If Keycloak cannot be installed or started the fixtures fail (never skip).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "keycloak.sh"
USERS = {"archivist": "zhang.archivist", "auditor": "liu.auditor", "clerk": "wang.clerk"}


def _script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def keycloak_issuer() -> Iterator[str]:
    was_running = _script("status").returncode == 0
    started = _script("start")
    if started.returncode != 0:
        pytest.fail(f"scripts/keycloak.sh start exited {started.returncode}:\n{started.stderr[-3000:]}")
    try:
        yield started.stdout.strip()
    finally:
        if not was_running:
            _script("stop", timeout=120)


def password(role: str) -> str:
    done = _script("password", role)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    return done.stdout.strip()


@pytest.fixture
def kc_token(keycloak_issuer: str) -> Callable[[str], str]:
    from keycloak import KeycloakOpenID

    server, realm = keycloak_issuer.split("/realms/")
    client = KeycloakOpenID(server_url=server + "/", realm_name=realm, client_id="archive-hub-cli")

    def token(role: str) -> str:
        return client.token(USERS[role], password(role))["access_token"]

    return token
