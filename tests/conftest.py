"""Shared fixtures: an isolated ARCHIVE_HUB_HOME per test, a seeded sample ERP, both catalog dialects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from archive_hub.settings import Settings

pytest_plugins = ["tests.pg_server"]


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
