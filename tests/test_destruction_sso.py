"""销毁清册 signatures under SSO (real Keycloak): each of the five Art. 18 signatures is given by the user signed
in with `archive-hub login`, who must hold the realm role for it; the name is the directory's, not typed."""

from __future__ import annotations

import json

from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import EventRow
from archive_hub.pipeline import run_sync
from tests.conftest import Hub, seed
from tests.keycloak_server import password
from tests.test_cli import cli
from tests.test_cli_login import cli_input
from tests.test_destruction import OLD_YEAR, WITNESS_ARGS

SIGNED_BY = {
    "unit-head": "wang.director",
    "archives-head": "li.archives-head",
    "accounting-head": "zhang.cfo",
    "archives-handler": "zhao.archives",
    "accounting-handler": "qian.accounting",
}


def test_with_sso_each_signature_is_given_by_the_signed_in_holder_of_its_role(
    hub: Hub, keycloak_issuer: str
) -> None:
    seed(hub, vouchers=6, fiscal_year=OLD_YEAR, bad_records=False)
    run_sync("erp_sample", "run-1")

    def signed_in_as(user: str) -> dict[str, str]:
        env = {
            "ARCHIVE_HUB_OIDC_ISSUER": keycloak_issuer,
            "ARCHIVE_HUB_TOKEN_FILE": str(hub.home / f"{user}.json"),
        }
        done = cli_input(password(user) + "\n", "login", "--username", user, "--password-stdin", env=env)
        assert done.returncode == 0, done.stderr
        return env

    archivist = signed_in_as("li.archives-head")
    assert cli("destruction", "draw-up", "--opinion", "已到期, 可销毁", env=archivist).returncode == 0

    clerk = cli("destruction", "sign", "1", "--role", "unit-head", env=signed_in_as("wang.clerk"))
    assert clerk.returncode == 2
    assert "wang.clerk does not hold the role signatory-unit-head (单位负责人)" in clerk.stderr
    director = signed_in_as("wang.director")
    typed = cli("destruction", "sign", "1", "--role", "unit-head", "--name", "李四", env=director)
    assert typed.returncode == 2 and "not 李四" in typed.stderr
    other_role = cli("destruction", "sign", "1", "--role", "archives-head", env=director)
    assert (
        other_role.returncode == 2 and "does not hold the role signatory-archives-head" in other_role.stderr
    )
    unsigned = cli(
        "destruction", "sign", "1", "--role", "unit-head", env={"ARCHIVE_HUB_OIDC_ISSUER": keycloak_issuer}
    )
    assert unsigned.returncode == 2 and "sign in with `archive-hub login`" in unsigned.stderr

    outputs = []
    for role, user in SIGNED_BY.items():
        out = cli("destruction", "sign", "1", "--role", role, env=signed_in_as(user))
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout)
    assert "all five have signed" in outputs[-1]

    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        signed = [
            json.loads(e.detail)
            for e in s.execute(select(EventRow).where(EventRow.kind == "destruction-signed")).scalars()
        ]
    catalog.dispose()
    assert [(d["role"], d["sso"]["username"]) for d in signed] == list(SIGNED_BY.items())
    assert all(d["name"].endswith(f"({d['sso']['username']})") for d in signed)
    executed = cli("destruction", "execute", "1", *WITNESS_ARGS, env=archivist)
    assert executed.returncode == 0, executed.stderr
    assert "6 record(s) destroyed" in executed.stdout
