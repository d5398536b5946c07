"""`archive-hub login` against the real Keycloak (tests/keycloak_server.py): with SSO configured, what the CLI
registers carries the signed-in user, never a name anyone can set; the device flow is driven through Keycloak's
own pages, as a user's browser would."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import requests
from lxml import html

from archive_hub.pipeline import run_sync
from archive_sink.filesystem import published_packages
from tests.conftest import Hub, seed
from tests.keycloak_server import password
from tests.test_cli import ROOT, cli


def cli_input(text: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archive_hub.cli", *args],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **env},
        timeout=120,
    )


def test_with_sso_the_cli_registers_the_signed_in_user_not_a_name_anyone_can_set(
    hub: Hub, keycloak_issuer: str
) -> None:
    seed(hub, vouchers=20, bad_records=False)
    run_sync("erp_sample", "run-1")
    code = published_packages(hub.settings.archive_root)[0].parent.name
    token_file = hub.home / "login" / "token.json"
    env = {
        "ARCHIVE_HUB_OIDC_ISSUER": keycloak_issuer,
        "ARCHIVE_HUB_TOKEN_FILE": str(token_file),
        "ARCHIVE_HUB_USER": "冒名者",  # ignored once SSO is configured
    }
    refused = cli("show", code, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"not signed in to {keycloak_issuer}: sign in with `archive-hub login`" in refused.stderr

    wrong = cli_input("not-the-password\n", "login", "--username", "liu.auditor", "--password-stdin", env=env)
    assert wrong.returncode == 2
    assert "refused the sign-in of liu.auditor: Invalid user credentials" in wrong.stderr
    assert "not-the-password" not in wrong.stdout + wrong.stderr and not token_file.exists()

    secret = password("auditor")
    ok = cli_input(secret + "\n", "login", "--username", "liu.auditor", "--password-stdin", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "signed in as liu.auditor (roles: auditor)" in ok.stdout
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert secret not in token_file.read_text() + ok.stdout + ok.stderr
    assert f"liu.auditor at {keycloak_issuer}" in cli("whoami", env=env).stdout

    assert cli("show", code, "--purpose", "审计抽查", env=env).returncode == 0
    # an access token past its lifetime is renewed with the refresh token, and the login goes on
    stored = json.loads(token_file.read_text())
    token_file.write_text(json.dumps(stored | {"expires_at": time.time() - 60}))
    assert cli("show", code, "--purpose", "复核", env=env).returncode == 0
    assert json.loads(token_file.read_text())["access_token"] != stored["access_token"]

    register = [json.loads(line) for line in cli("usage", "--json", env=env).stdout.splitlines()]
    assert [(e["kind"], e["by"], e["purpose"]) for e in register] == [
        ("查阅", "liu.auditor", "审计抽查"),
        ("查阅", "liu.auditor", "复核"),
    ]

    out = cli("logout", env=env)
    assert out.returncode == 0 and "signed out" in out.stdout and not token_file.exists()
    assert cli("show", code, env=env).returncode == 2


class Browser:
    """Enough of a browser for Keycloak's pages: it follows redirects itself and, like a browser on
    http://127.0.0.1 (a secure context), sends cookies marked Secure, which `requests` alone would not."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def go(self, method: str, url: str, data: dict[str, str] | None = None) -> requests.Response:
        for _ in range(10):
            response = self.session.request(method, url, data=data, allow_redirects=False, timeout=30)
            for cookie in self.session.cookies:
                cookie.secure = False
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            url, method, data = requests.compat.urljoin(url, response.headers["location"]), "GET", None
        raise AssertionError(f"too many redirects at {url}")


def approve_device(url: str, username: str, secret: str) -> str:
    """What a user does in the browser: open the link, sign in, grant access if asked. Returns the last page."""
    browser = Browser()
    page = browser.go("GET", url)
    for _ in range(4):
        doc = html.fromstring(page.text)
        forms = doc.xpath("//form[@action]")
        if not forms:
            return page.text
        form = forms[0]
        fields = {i.get("name"): i.get("value", "") for i in form.xpath(".//input[@name]")}
        if "username" in fields or "password" in fields:
            fields.update(username=username, password=secret)
        elif "accept" in {b.get("name") for b in form.xpath(".//*[@name]")}:
            fields["accept"] = "Yes"
        page = browser.go("POST", requests.compat.urljoin(page.url, form.get("action")), fields)
    return page.text


def test_device_login_through_keycloak_pages(hub: Hub, keycloak_issuer: str) -> None:
    token_file = hub.home / "token.json"
    log = hub.home / "login.log"
    env = {"ARCHIVE_HUB_OIDC_ISSUER": keycloak_issuer, "ARCHIVE_HUB_TOKEN_FILE": str(token_file)}
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "archive_hub.cli", "login"],
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "300", **env},
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"open (\S+) and confirm the code (\S+);", Path(log).read_text())):
            assert process.poll() is None and time.monotonic() < deadline, Path(log).read_text()
            time.sleep(0.2)
        url, user_code = found.groups()
        assert user_code in url or "device" in url
        approve_device(url, "zhang.archivist", password("archivist"))
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, Path(log).read_text()
    assert "signed in as zhang.archivist (roles: archivist)" in stdout
    assert "zhang.archivist at" in cli("whoami", env=env).stdout
