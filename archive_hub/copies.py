"""`archive-hub copy`: hand out a verified copy of a record's package, registered (复制, 利用登记).

《会计档案管理办法》 asks that every consultation, copy and loan be registered. A copy is made into a
hidden partial directory and checked exactly as `verify` checks the original (every file re-hashed,
SHA-256 and SM3, against the manifests and the catalog; the metadata); only then is the directory
renamed into view. The copy is logged in the hash-chained event log with who asked, why, and where it went. A copy
that does not match the catalog is never handed out: the original is then reported as damaged.
"""

from __future__ import annotations

import functools
import getpass
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import Event, append
from archive_hub.catalog.history import RecordHistory
from archive_hub.catalog.packages import expected_hashes
from archive_sink.filesystem import copy_checked


class CopyRefused(RuntimeError):
    """The copy could not be made whole and verified; nothing was handed out."""


@dataclass
class CopyMade:
    version: int
    path: Path
    files: int
    bytes: int


def requester() -> str:
    """Who asked: with SSO configured (ARCHIVE_HUB_OIDC_ISSUER), the user signed in with `archive-hub login`,
    and nothing else (sso/login.py raises NotSignedIn); without it, ARCHIVE_HUB_USER or the login name.
    Resolved once per process and configuration: commands ask before they open a transaction, so the
    identity provider is never waited for while the catalog is locked."""
    names = (
        "ARCHIVE_HUB_OIDC_ISSUER",
        "ARCHIVE_HUB_OIDC_AUDIENCE",
        "ARCHIVE_HUB_TOKEN_FILE",
        "ARCHIVE_HUB_USER",
    )
    return _requester(tuple(os.environ.get(n) for n in names))


@functools.cache
def _requester(_configuration: tuple[str | None, ...]) -> str:
    from sso.login import LoginSettings, signed_in

    if (settings := LoginSettings.from_env()) is not None:
        return signed_in(settings).username
    return os.environ.get("ARCHIVE_HUB_USER") or getpass.getuser()


def copy_record(
    catalog: Catalog,
    archive_root: Path,
    history: RecordHistory,
    destination: Path,
    purpose: str,
    *,
    all_versions: bool = False,
    kind: str = "copied",
    register: Callable[[Session, list[CopyMade]], dict[str, object]] | None = None,
) -> list[CopyMade]:
    """Every chosen version copied and verified, then registered (`kind`: copied, or lent for a loan, whose
    `register` adds its own rows in the same transaction and returns what its events add), then renamed
    into view: a copy is never out unregistered, and a registration never names a copy that is not out."""
    code = history.record.archival_code
    if history.record.status == "destroyed":
        raise CopyRefused(f"{code}: destroyed under a 销毁清册 (`archive-hub show {code}` says which)")
    chosen = history.versions if all_versions else [v for v in [history.current] if v is not None]
    if not chosen:
        raise CopyRefused(f"{code}: no published package to copy")
    staged: list[tuple[Path, CopyMade]] = []
    try:
        destination.mkdir(parents=True, exist_ok=True)
        for version in chosen:  # every copy made and verified before any is handed out
            package = version.package
            target = destination / f"{code}-v{package.version}"
            if target.exists():
                raise CopyRefused(f"{target} exists already; a copy never overwrites anything")
            partial = destination / f".{target.name}.partial"
            staged.append((partial, CopyMade(package.version, target, len(version.files), package.byte_size)))
            expected = expected_hashes(version.files)
            checked = copy_checked(archive_root / package.path, partial, expected, code)
            problems = [f"{p.path}: {p.reason}" for p in checked]
            if problems:
                raise CopyRefused(
                    f"{code} v{package.version}: the copy does not match the catalog, so the original is "
                    f"damaged; nothing was handed out (run `archive-hub show '{code}' --verify`): "
                    + "; ".join(dict.fromkeys(problems))
                )
        with catalog.transaction() as session:  # registered first: a copy is never out unregistered
            extra = register(session, [m for _, m in staged]) if register else {}
            append(
                session,
                [
                    Event(
                        kind,
                        code,
                        {
                            **extra,
                            "version": m.version,
                            "destination": str(m.path),
                            "purpose": purpose,
                            "by": requester(),
                            "files": m.files,
                            "bytes": m.bytes,
                        },
                    )
                    for _, m in staged
                ],
            )
        for partial, m in staged:
            os.rename(partial, m.path)
    except OSError as exc:  # a missing original, a full or read-only destination: one clear line
        raise CopyRefused(
            f"{code}: cannot copy to {destination}: {exc.strerror or exc} ({exc.filename})"
        ) from None
    finally:
        for partial, _ in staged:
            shutil.rmtree(partial, ignore_errors=True)
    return [m for _, m in staged]
