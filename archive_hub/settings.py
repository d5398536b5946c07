"""Where the hub keeps its files and catalog; embedded defaults so `make demo` needs no setup.

Every value can be overridden by an environment variable (ARCHIVE_HUB_*). Connection strings may
hold passwords: they are only ever shown through `redact_url`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    home: Path
    catalog_url: str
    archive_root: Path
    staging_root: Path
    runs_root: Path
    sources_dir: Path
    bank_accounts_file: Path  # the accounts `bank reconcile` reconciles (银行存款余额调节表)
    clamd_url: str | None = None  # 病毒检测: unix:///path/clamd.sock or tcp://host:3310; None: no scan
    verapdf: str | None = None  # PDF/A validation: veraPDF's lib folder (scripts/verapdf.sh) or its launcher
    oidc_issuer: str | None = None  # SSO for `serve`: the Keycloak realm URL tokens carry as iss
    oidc_audience: str = "archive-hub-api"  # the client id tokens must be issued for (aud)
    # which OA approvals `oa reconcile` pairs with which books' vouchers (审批单 ↔ 记账凭证)
    approvals_file: Path = PROJECT_ROOT / "config" / "approval_reconciliation.yaml"

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("ARCHIVE_HUB_HOME", PROJECT_ROOT / "var")).resolve()
        archive_root = Path(os.environ.get("ARCHIVE_HUB_ARCHIVE_ROOT", home / "archive"))
        return cls(
            home=home,
            catalog_url=os.environ.get("ARCHIVE_HUB_CATALOG_URL", f"sqlite:///{home / 'catalog.sqlite'}"),
            archive_root=archive_root,
            # Staging lives on the same filesystem as the archive so publishing is one rename.
            staging_root=Path(os.environ.get("ARCHIVE_HUB_STAGING_ROOT", archive_root / ".staging")),
            runs_root=Path(os.environ.get("ARCHIVE_HUB_RUNS_ROOT", home / "runs")),
            sources_dir=Path(os.environ.get("ARCHIVE_HUB_SOURCES_DIR", PROJECT_ROOT / "config" / "sources")),
            bank_accounts_file=Path(
                os.environ.get("ARCHIVE_HUB_BANK_ACCOUNTS", PROJECT_ROOT / "config" / "bank_accounts.yaml")
            ),
            clamd_url=os.environ.get("ARCHIVE_HUB_CLAMD") or None,
            verapdf=os.environ.get("ARCHIVE_HUB_VERAPDF") or None,
            oidc_issuer=os.environ.get("ARCHIVE_HUB_OIDC_ISSUER") or None,
            oidc_audience=os.environ.get("ARCHIVE_HUB_OIDC_AUDIENCE") or "archive-hub-api",
            approvals_file=Path(
                os.environ.get(
                    "ARCHIVE_HUB_APPROVALS", PROJECT_ROOT / "config" / "approval_reconciliation.yaml"
                )
            ),
        )


_ENV_REF = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def expand_env(text: str, extra: dict[str, str] | None = None) -> str:
    """Expand ${VAR} and ${VAR:-default}; secrets stay in the environment, never in config files."""
    env = {**os.environ, **(extra or {})}

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise KeyError(f"environment variable {name} is not set")

    return _ENV_REF.sub(sub, text)


def redact_url(url: str) -> str:
    """A connection URL safe for logs, errors and XCom (password and secret-looking query params hidden)."""
    try:
        from sqlalchemy.engine import make_url  # late: `archive-hub --help` need not load SQLAlchemy

        parsed = make_url(url)
    except Exception:  # not an SQLAlchemy URL: hide any user-info part
        return re.sub(r"//[^@/]*@", "//***@", url)
    query = {
        k: ("***" if re.search(r"pass|secret|token|key", k, re.I) else v) for k, v in parsed.query.items()
    }
    return parsed.set(query=query).render_as_string(hide_password=True)


_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)
_SECRET_PARAM = re.compile(
    r"\b([a-z_]*(?:pass(?:word|wd)?|secret|token|api_?key|access_?key|private_?key)[a-z_]*)=([^&\s'\"]+)",
    re.I,
)


def redact_text(text: str) -> str:
    """A message that may quote a URL or a DSN (a driver's error, say) made safe to store or show."""
    return _SECRET_PARAM.sub(r"\1=***", _USERINFO.sub(r"\1***@", text))
