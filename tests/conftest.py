"""Shared fixtures: an isolated ARCHIVE_HUB_HOME per test, a seeded sample ERP, both catalog dialects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from archive_hub.settings import Settings

pytest_plugins = ["tests.pg_server", "tests.s3_server", "tests.keycloak_server"]


@dataclass
class Hub:
    home: Path
    settings: Settings
    erp_url: str
    seed: object | None = None


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    home = tmp_path / "hub"
    home.mkdir()
    monkeypatch.setenv("ARCHIVE_HUB_HOME", str(home))
    for name in (
        "ARCHIVE_HUB_CATALOG_URL",
        "ARCHIVE_HUB_ARCHIVE_ROOT",
        "ARCHIVE_HUB_STAGING_ROOT",
        "ARCHIVE_HUB_RUNS_ROOT",
        "ARCHIVE_HUB_BANK_ACCOUNTS",
        "ARCHIVE_HUB_CLAMD",
        "ARCHIVE_HUB_OIDC_ISSUER",  # with SSO configured the CLI registers only a signed-in user
        "ARCHIVE_HUB_TOKEN_FILE",
        "ARCHIVE_HUB_USER",
    ):
        monkeypatch.delenv(name, raising=False)
    return Hub(home, Settings.from_env(), f"sqlite:///{home / 'sample_erp' / 'erp.sqlite'}")


def seed(hub: Hub, vouchers: int = 120, **kwargs: object) -> object:
    from connectors.erp.sample_erp.seed import seed_sample_erp

    hub.seed = seed_sample_erp(
        hub.erp_url, hub.home / "sample_erp" / "attachments", vouchers=vouchers, **kwargs
    )
    return hub.seed


@pytest.fixture
def seeded_hub(hub: Hub) -> Hub:
    seed(hub)
    return hub


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> str:
    """The same test on the embedded SQLite catalog and on a real PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{hub.home / 'catalog.sqlite'}"
    else:
        url = request.getfixturevalue("pg_database_url")
    monkeypatch.setenv("ARCHIVE_HUB_CATALOG_URL", url)
    hub.settings = Settings.from_env()
    return url


def run_at_once(target: Callable[..., None], *calls: tuple[object, ...], timeout: float = 300) -> None:
    """Each call in a fresh (spawned) process, all at the same time; every process must exit 0."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=target, args=args) for args in calls]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=timeout)
        assert p.exitcode == 0, f"{target.__name__}{p._args} exited with {p.exitcode}"  # type: ignore[attr-defined]


def book_copy_of_voucher(
    erp_url: str, source_id: int, new_id: int, voucher_no: int, with_attachments: bool = False
) -> None:
    """Book a new voucher in the sample ERP as a copy of another (same lines, its old timestamps); with
    `with_attachments`, also pointing at the very same attachment files (one invoice booked twice)."""
    import sqlite3

    tables: list[tuple[str, str, dict[str, int]]] = [
        ("erp_voucher", "id", {"id": new_id, "voucher_no": voucher_no}),
        ("erp_voucher_line", "voucher_id", {"voucher_id": new_id}),
    ]
    if with_attachments:
        tables.append(("erp_attachment", "voucher_id", {"voucher_id": new_id}))
    with sqlite3.connect(erp_url.removeprefix("sqlite:///")) as erp:
        for table, key, update in tables:
            cols = [r[1] for r in erp.execute(f"pragma table_info({table})")]
            for row in erp.execute(f"select * from {table} where {key}=?", (source_id,)).fetchall():
                values = dict(zip(cols, row, strict=True)) | update
                if table != "erp_voucher":
                    values["id"] = values["id"] + new_id * 100
                erp.execute(
                    f"insert into {table} ({','.join(cols)}) values ({','.join('?' * len(cols))})",
                    list(values.values()),
                )


def override_erp_sample(hub: Hub, monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> Path:
    """A copy of config/sources/erp_sample.yaml with one setting changed, in a sources dir of the hub's own,
    made the sources dir of this test (ARCHIVE_HUB_SOURCES_DIR)."""
    from archive_hub.settings import PROJECT_ROOT

    config = (PROJECT_ROOT / "config" / "sources" / "erp_sample.yaml").read_text(encoding="utf-8")
    assert old in config, f"erp_sample.yaml no longer contains {old!r}"
    sources = hub.home / "sources"
    sources.mkdir(exist_ok=True)
    (sources / "erp_sample.yaml").write_text(config.replace(old, new), encoding="utf-8")
    monkeypatch.setenv("ARCHIVE_HUB_SOURCES_DIR", str(sources))
    return sources


def service_script(name: str, command: str, timeout: float = 900) -> str:
    """Run scripts/<name> <command> (which installs what it needs) and return what it prints: the value a
    test points the hub at. A failure fails the test with the script's messages."""
    import subprocess

    from archive_hub.settings import PROJECT_ROOT

    done = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / name), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/{name} {command} exited {done.returncode}:\n{done.stderr}")
    return done.stdout.strip()


def claims_race(
    catalog_url: str, first: tuple[str, list[object]], second: tuple[str, list[object]]
) -> dict[str, object]:
    """Two sources claim at the same moment (catalog/claims.py): `first` claims and holds its transaction
    open, `second` claims in another thread and must block on it; then `first` commits. Returns what
    `second` was refused. Each side is (source id, [Presented, ...])."""
    import threading

    from sqlalchemy.orm import Session

    from archive_hub.catalog import Catalog
    from archive_hub.catalog.claims import claim_attachments

    catalog = Catalog(catalog_url)
    catalog.create_schema()
    winner = Session(catalog.engine)
    winner.begin()
    assert claim_attachments(winner, first[0], "run-a", first[1]) == {}  # type: ignore[arg-type]
    result: dict[str, dict[str, object]] = {}

    def loser() -> None:
        with Session(catalog.engine) as session, session.begin():
            result["refused"] = claim_attachments(session, second[0], "run-b", second[1])  # type: ignore[arg-type]

    thread = threading.Thread(target=loser)
    thread.start()
    thread.join(timeout=3)
    assert thread.is_alive()  # blocked on the first side's uncommitted claim
    winner.commit()
    winner.close()
    thread.join(timeout=30)
    catalog.dispose()
    return result["refused"]
