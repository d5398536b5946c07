"""`archive-hub serve` for real: the uvicorn process, a real Keycloak issuing the tokens (tests/keycloak_server.py).

Users signed in through SSO search, open (查阅) and download (复制) records; each use is registered under the
name Keycloak vouches for. No token, a forged or altered one, or a user without an archive role is refused;
an altered file is never served.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import ArchiveRecordRow, EventRow, FileRow, PackageRow
from archive_hub.pipeline import run_sync
from archive_sink.filesystem import published_packages
from tests.conftest import Hub, seed
from tests.keycloak_server import password
from tests.s3_server import free_port
from tests.test_cli import ROOT, cli


@dataclass
class Api:
    url: str
    log: Path
    hub: Hub
    issuer: str


def master_realm_token(issuer: str) -> str:
    """A real token from the same Keycloak, but from its master realm (the bootstrap admin's)."""
    from keycloak import KeycloakOpenID

    server = issuer.split("/realms/")[0] + "/"
    client = KeycloakOpenID(server_url=server, realm_name="master", client_id="admin-cli")
    return client.token("admin", password("admin"))["access_token"]


@pytest.fixture
def api(hub: Hub, keycloak_issuer: str, request: pytest.FixtureRequest) -> Iterator[Api]:
    seed(hub, vouchers=40, bad_records=False, **getattr(request, "param", {}))
    run_sync("erp_sample", "run-1")
    port = free_port()
    log = hub.home / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "archive_hub.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "ARCHIVE_HUB_OIDC_ISSUER": keycloak_issuer, "COLUMNS": "200"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"archive-hub serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    try:
        yield Api(url, log, hub, keycloak_issuer)
    finally:
        process.terminate()
        process.wait(timeout=20)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def usage_events(hub: Hub) -> list[EventRow]:
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        rows = list(
            s.execute(
                select(EventRow).where(EventRow.kind.in_(["consulted", "copied"])).order_by(EventRow.seq)
            )
            .scalars()
            .all()
        )
    catalog.dispose()
    return rows


def test_an_archivist_searches_opens_and_downloads_and_each_use_is_registered_under_the_sso_name(
    api: Api, kc_token: Callable[[str], str]
) -> None:
    token = kc_token("archivist")
    me = requests.get(f"{api.url}/api/me", headers=bearer(token), timeout=10).json()
    assert "username" in me, (me, api.log.read_text()[-2000:])
    assert me["username"] == "zhang.archivist" and "archivist" in me["roles"]

    catalog = Catalog(api.hub.settings.catalog_url)
    with catalog.reading() as s:
        expected = sorted(
            s.execute(
                select(ArchiveRecordRow.archival_code).where(ArchiveRecordRow.search_text.contains("折旧"))
            ).scalars()
        )
    catalog.dispose()
    assert len(expected) >= 10  # the sample books depreciation every month
    found = requests.get(
        f"{api.url}/api/records", params={"text": "折旧", "limit": 500}, headers=bearer(token), timeout=10
    )
    assert found.status_code == 200
    assert sorted(r["archival_code"] for r in found.json()) == expected
    assert usage_events(api.hub) == []  # a search is not a consultation

    package = published_packages(api.hub.settings.archive_root)[0]
    code = package.parent.name
    opened = requests.get(
        f"{api.url}/api/records/{quote(code)}",
        params={"purpose": "年度审计"},
        headers=bearer(token),
        timeout=10,
    )
    assert opened.status_code == 200 and opened.json()["archival_code"] == code
    got = requests.get(
        f"{api.url}/api/records/{quote(code)}/files/data/voucher.xml",
        params={"purpose": "年度审计取证"},
        headers=bearer(token),
        timeout=10,
    )
    assert got.status_code == 200
    original = (package / "data" / "voucher.xml").read_bytes()
    assert got.content == original
    assert got.headers["X-Archive-SHA256"] == hashlib.sha256(original).hexdigest()
    assert got.headers["X-Archive-SM3"] == hashlib.new("sm3", original).hexdigest()

    consulted, copied = usage_events(api.hub)
    subject = claims(token)["sub"]
    assert (consulted.kind, consulted.subject) == ("consulted", code)
    assert json.loads(consulted.detail) == {
        "by": "zhang.archivist",
        "sso_subject": subject,
        "purpose": "年度审计",
    }
    assert (copied.kind, copied.subject) == ("copied", code)
    assert json.loads(copied.detail) == {
        "by": "zhang.archivist",
        "sso_subject": subject,
        "purpose": "年度审计取证",
        "version": 1,
        "file": "data/voucher.xml",
        "via": "http",
    }
    register = cli("usage", "--json")
    assert [json.loads(line)["by"] for line in register.stdout.splitlines()] == ["zhang.archivist"] * 2
    over_http = requests.get(f"{api.url}/api/usage", headers=bearer(kc_token("auditor")), timeout=10).json()
    assert over_http == [json.loads(line) for line in register.stdout.splitlines()]
    too_long = requests.get(
        f"{api.url}/api/records/{quote(code)}",
        params={"purpose": "x" * 501},
        headers=bearer(token),
        timeout=10,
    )
    assert too_long.status_code == 422
    assert cli("verify", "--chain-only").returncode == 0
    assert token not in api.log.read_text()  # the token is never logged


def test_no_token_an_altered_token_or_no_archive_role_is_refused_and_an_altered_file_is_never_served(
    api: Api, kc_token: Callable[[str], str]
) -> None:
    package = published_packages(api.hub.settings.archive_root)[2]
    code = quote(package.parent.name)
    record = f"{api.url}/api/records/{code}"

    anonymous = requests.get(record, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")

    clerk = kc_token("clerk")
    refused = requests.get(record, headers=bearer(clerk), timeout=10)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "wang.clerk has neither role archivist nor auditor"

    # the clerk's own, validly signed token with the archivist role written in: the signature no longer fits
    head, body, signature = clerk.split(".")
    forged_claims = claims(clerk) | {"realm_access": {"roles": ["archivist"]}}
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    forged = requests.get(record, headers=bearer(f"{head}.{forged_body}.{signature}"), timeout=10)
    assert forged.status_code == 401
    assert forged.json()["detail"] == "access token refused: the signature does not verify"
    other_realm = master_realm_token(api.issuer)
    foreign = requests.get(record, headers=bearer(other_realm), timeout=10)
    assert foreign.status_code == 401
    assert foreign.json()["detail"] == "access token refused: signed with a key the issuer does not publish"
    garbage = requests.get(record, headers=bearer("not-a-token"), timeout=10)
    assert garbage.status_code == 401 and "access token refused" in garbage.json()["detail"]

    token = kc_token("auditor")
    assert (
        requests.get(f"{api.url}/api/records/J001-NONE", headers=bearer(token), timeout=10).status_code == 404
    )
    traversal = requests.get(f"{record}/files/../../../catalog.sqlite", headers=bearer(token), timeout=10)
    assert traversal.status_code == 404
    (package / "data" / "voucher.xml").write_bytes(b"<altered/>")
    altered = requests.get(f"{record}/files/data/voucher.xml", headers=bearer(token), timeout=10)
    assert altered.status_code == 409
    assert "data/voucher.xml differs from the catalog (SHA-256/SM3); not served" in altered.json()["detail"]
    assert b"altered" not in altered.content
    assert usage_events(api.hub) == []  # nothing was consulted or copied
    for refused_token in (clerk, token):
        assert refused_token not in api.log.read_text()


def test_serve_refuses_to_start_without_an_issuer_or_when_the_issuer_does_not_answer(hub: Hub) -> None:
    missing = cli("serve")
    assert missing.returncode == 2 and "ARCHIVE_HUB_OIDC_ISSUER is not set" in missing.stderr
    dead = cli("serve", env={"ARCHIVE_HUB_OIDC_ISSUER": f"http://127.0.0.1:{free_port()}/realms/archive-hub"})
    assert dead.returncode == 2 and "cannot fetch the signing keys of http://127.0.0.1:" in dead.stderr
    assert "Traceback" not in missing.stderr + dead.stderr


@pytest.mark.parametrize("api", [{"attachment_every": 20, "attachment_size": 34_000_000}], indirect=True)
def test_a_file_larger_than_memory_allows_is_hashed_first_then_streamed(
    api: Api, kc_token: Callable[[str], str]
) -> None:
    catalog = Catalog(api.hub.settings.catalog_url)
    with catalog.reading() as s:
        big = s.execute(
            select(
                ArchiveRecordRow.archival_code, FileRow.path, FileRow.sha256, FileRow.size, PackageRow.path
            )
            .join(PackageRow, PackageRow.record_id == ArchiveRecordRow.id)
            .join(FileRow, FileRow.package_id == PackageRow.id)
            .where(FileRow.size > 32 << 20)
        ).first()
    catalog.dispose()
    assert big is not None
    code, path, sha256, size, package = big
    got = requests.get(
        f"{api.url}/api/records/{quote(code)}/files/{path}", headers=bearer(kc_token("archivist")), timeout=60
    )
    assert got.status_code == 200 and int(got.headers["Content-Length"]) == size == len(got.content)
    assert hashlib.sha256(got.content).hexdigest() == sha256 == got.headers["X-Archive-SHA256"]
    original = api.hub.settings.archive_root / package / path
    original.write_bytes(original.read_bytes()[:-1] + b"!")  # the last byte: found only by reading to the end
    altered = requests.get(
        f"{api.url}/api/records/{quote(code)}/files/{path}", headers=bearer(kc_token("archivist")), timeout=60
    )
    assert altered.status_code == 409


def test_an_auditor_reads_the_approvals_report_and_nothing_is_kept_by_reading(
    api: Api, kc_token: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_hub.demo_oa import deliver_callbacks, running_wecom, sample_dir, wecom_env
    from connectors.oa.sample_wecom import write_sample_wecom
    from tests.oa.test_oa_pipeline import _book_two_person_voucher

    hub = api.hub
    from connectors.erp.sample_erp.seed import touch_voucher

    vid = _book_two_person_voucher(
        hub.erp_url, "2025-06-30", {"张伟": "500.00", "李娜": "300.00"}
    )  # 40 are few
    touch_voucher(hub.erp_url, vid, new_summary="报销差旅费")  # booked after the first sync
    assert run_sync("erp_sample", "run-2")["archived"] == 1
    write_sample_wecom(hub.erp_url, sample_dir(hub.settings))
    for name, value in wecom_env(hub.settings).items():
        monkeypatch.setenv(name, value)
    with running_wecom(hub.settings) as (peer_url, receiver_url):
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        deliver_callbacks(hub.settings, receiver_url, "wecom_approvals")
        assert run_sync("wecom_approvals", "oa-1")["archived"] > 0
    url = f"{api.url}/api/reports/approvals"
    answer = requests.get(url, headers=bearer(kc_token("auditor")), timeout=60)
    assert answer.status_code == 200, answer.text
    (report,) = answer.json()
    expected = json.loads(cli("oa", "reconcile", "--dry-run", "--json").stdout)[0]
    assert report == expected, (report, expected)
    assert report["matched"] == report["linked_now"] > 0, report  # found, not kept
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        assert not s.scalars(select(EventRow).where(EventRow.kind == "approval-linked")).all()
    catalog.dispose()
    assert requests.get(url, headers=bearer(kc_token("clerk")), timeout=10).status_code == 403
    assert requests.get(url, timeout=10).status_code == 401
