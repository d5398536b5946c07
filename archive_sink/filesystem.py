"""Filesystem store: stage → verify → make durable → publish by one atomic rename.

A package directory becomes visible under the archive root only by rename(2) of a complete, synced
staging directory on the same filesystem, so a crash at any moment leaves the whole package or
nothing. Leftover staging directories from a crash are removed by `clean_staging`. Published
packages are never overwritten: a changed record gets a new version directory.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from archive_sink.durability import fsync_dir, read_bytes, syncfs, write_file
from archive_sink.hashing import file_digests
from archive_sink.metadata_check import check_metadata
from archive_sink.package import ArchivePackage, PackageFile


class PackageConflictError(RuntimeError):
    """A different package already sits where this one would be published."""


class StagingVerificationError(RuntimeError):
    """What was read back from staging differs from what was built: never published."""


@dataclass
class StagedPackage:
    package: ArchivePackage
    staging_path: Path


class FilesystemArchive:
    def __init__(self, root: Path, staging_root: Path | None = None, *, durable: bool = True) -> None:
        self.root = Path(root)
        self.staging_root = Path(staging_root) if staging_root else self.root / ".staging"
        self.durable = durable
        self.root.mkdir(parents=True, exist_ok=True)
        self.staging_root.mkdir(parents=True, exist_ok=True)

    def location(self, package: ArchivePackage) -> Path:
        return self.root / package.relative_path

    def stage(self, package: ArchivePackage) -> StagedPackage:
        """Write every file of the package under a fresh staging directory (not yet durable)."""
        staging = os.path.join(self.staging_root, f"{uuid.uuid4().hex}.partial")
        os.mkdir(staging)
        created = {staging}
        for f in package.files:
            target = os.path.join(staging, f.path)
            parent = os.path.dirname(target)
            if parent not in created:  # package paths are shallow (data/, data/attachments/): no walk up
                os.makedirs(parent, exist_ok=True)
                created.add(parent)
            write_file(target, f.data)
        return StagedPackage(package, Path(staging))

    def verify_staged(self, staged: StagedPackage) -> None:
        """Read every staged file back and compare it byte for byte with the package built in memory.

        Runs after the batch's syncfs (which reports write-back errors) and before publishing, so a
        short write, a full disk or a staged file changed meanwhile is caught while the package is
        still invisible. The read is served from the page cache, so it does not prove the device
        holds the bytes; the scheduled verify (DAG verify_archive) re-reads them later, when they
        have left the cache. Comparing the bytes is a stricter check than comparing a hash of them,
        and a tenth of the cost (memcmp, no SHA-256); the manifests' hashes were computed from those
        same in-memory bytes.
        """
        base = str(staged.staging_path)
        for f in staged.package.files:
            if read_bytes(os.path.join(base, f.path), len(f.data)) != f.data:
                raise StagingVerificationError(
                    f"{staged.package.archival_code} v{staged.package.version}: staged {f.path} differs from what was built"
                )

    def sync(self) -> None:
        """Make everything staged so far durable (one syncfs for the whole batch)."""
        if self.durable:
            syncfs(self.staging_root)

    def publish(self, staged: StagedPackage) -> tuple[Path, ArchivePackage]:
        """Rename a synced staging directory into place and return what is now published there.

        If a crash struck after an earlier attempt's rename but before its catalog commit, the same
        content (same fingerprint) is already in place: that original is kept and returned, read back
        from disk, so the catalog records the bytes that are really there. A different, uncatalogued
        package in the way is moved to .orphaned/ rather than overwritten or trusted.
        """
        final = self.location(staged.package)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            if read_fingerprint(final) == staged.package.fingerprint:
                shutil.rmtree(staged.staging_path)
                return final, load_package(final, staged.package)
            orphans = self.root / ".orphaned"
            orphans.mkdir(exist_ok=True)
            os.rename(final, orphans / f"{uuid.uuid4().hex}-{final.parent.name}-{final.name}")
        os.rename(staged.staging_path, final)
        return final, staged.package

    def sync_published(self, paths: list[Path]) -> None:
        """Make the renames durable before the catalog commits.

        syncfs(2) writes back every dirty inode and commits the journal of the whole filesystem, which
        includes the new directory entries, so a per-directory fsync after it would add nothing.
        """
        if self.durable and paths:
            syncfs(self.root)

    def discard(self, staged: StagedPackage) -> None:
        shutil.rmtree(staged.staging_path, ignore_errors=True)

    def clean_staging(self) -> int:
        """Remove staging leftovers of crashed runs; they were never visible."""
        removed = 0
        for entry in self.staging_root.iterdir():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed


def load_package(path: Path, like: ArchivePackage) -> ArchivePackage:
    """Read a published package back into memory (its real bytes and hashes)."""
    tag_names = {f.path for f in like.tags}
    payload, tags = [], []
    roles = {f.path: (f.role, f.media_type) for f in like.files}
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        name = str(file.relative_to(path))
        role, media = roles.get(name, ("attachment", "application/octet-stream"))
        item = PackageFile(name, file.read_bytes(), role, media)
        (tags if name in tag_names else payload).append(item)
    return ArchivePackage(
        like.archival_code, like.version, like.relative_path, like.fingerprint, payload, tags
    )


def published_packages(root: Path) -> list[Path]:
    """Every visible package directory (<fonds>/<year>/<category>/<档号>/v<n>); staging is never listed."""
    found = []
    for fonds in (
        sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if root.is_dir()
        else []
    ):
        found.extend(p for p in sorted(fonds.glob("*/*/*/v*")) if p.is_dir())
    return found


def read_fingerprint(package_dir: Path) -> str | None:
    info = package_dir / "bag-info.txt"
    if not info.exists():
        return None
    for line in info.read_text(encoding="utf-8").splitlines():
        if line.startswith("Archive-Hub-Fingerprint:"):
            return line.split(":", 1)[1].strip()
    return None


@dataclass
class PackageProblem:
    path: str
    reason: str


def verify_package_dir(
    package_dir: Path,
    expected: dict[str, tuple[str, str, int]] | None = None,
    archival_code: str | None = None,
) -> list[PackageProblem]:
    """Re-hash every file against both manifests (and the catalog's record of them when given),
    then check the DA/T 94 metadata against the manifests and the catalog's 档号.

    `expected` maps a file's path inside the bag to (sha256, sm3, size) as the catalog holds them.
    """
    problems: list[PackageProblem] = []
    manifests: dict[str, dict[str, str]] = {}
    for algorithm in ("sha256", "sm3"):
        manifest = package_dir / f"manifest-{algorithm}.txt"
        if not manifest.exists():
            problems.append(PackageProblem(manifest.name, "manifest missing"))
            continue
        entries = {}
        for line in manifest.read_text(encoding="utf-8").splitlines():
            digest, _, name = line.partition("  ")
            entries[name] = digest
        manifests[algorithm] = entries
    tag_manifest = package_dir / "tagmanifest-sha256.txt"
    tag_entries: dict[str, str] = {}
    if tag_manifest.exists():
        for line in tag_manifest.read_text(encoding="utf-8").splitlines():
            digest, _, name = line.partition("  ")
            tag_entries[name] = digest
    else:
        problems.append(PackageProblem(tag_manifest.name, "tag manifest missing"))

    on_disk = (
        {str(p.relative_to(package_dir)): p for p in (package_dir / "data").rglob("*") if p.is_file()}
        if (package_dir / "data").is_dir()
        else {}
    )
    listed = set(manifests.get("sha256", {})) | set(manifests.get("sm3", {}))
    for name in sorted(listed - set(on_disk)):
        problems.append(PackageProblem(name, "listed in the manifest but missing"))
    for name in sorted(set(on_disk) - listed):
        problems.append(PackageProblem(name, "present but not in any manifest"))
    for name, path in sorted(on_disk.items()):
        sha, sm3, size = file_digests(path)
        if name in manifests.get("sha256", {}) and manifests["sha256"][name] != sha:
            problems.append(PackageProblem(name, "SHA-256 differs from manifest-sha256.txt"))
        if name in manifests.get("sm3", {}) and manifests["sm3"][name] != sm3:
            problems.append(PackageProblem(name, "SM3 differs from manifest-sm3.txt"))
        if expected is not None:
            want = expected.get(name)
            if want is None:
                problems.append(PackageProblem(name, "not recorded in the catalog"))
            elif want != (sha, sm3, size):
                problems.append(PackageProblem(name, "hash or size differs from the catalog"))
    tag_digests = {}
    for name in sorted(set(tag_entries) | {n for n in expected or {} if not n.startswith("data/")}):
        path = package_dir / name
        if path.is_file():
            tag_digests[name] = file_digests(path)  # once, for the tag manifest and for the catalog
    for name, digest in sorted(tag_entries.items()):
        if name not in tag_digests:
            problems.append(PackageProblem(name, "tag file missing"))
        elif tag_digests[name][0] != digest:
            problems.append(PackageProblem(name, "tag file changed (tagmanifest-sha256.txt)"))
    if expected is not None:
        for name in sorted(set(expected) - set(on_disk) - set(tag_digests)):
            problems.append(PackageProblem(name, "recorded in the catalog but missing on disk"))
        # The tag files too (the tag manifest itself is covered by nothing else), not only the payload.
        for name, got in sorted(tag_digests.items()):
            if name in expected and expected[name] != got:
                problems.append(PackageProblem(name, "hash or size differs from the catalog"))
        for extra in sorted(p.name for p in package_dir.iterdir() if p.is_file() and p.name not in expected):
            problems.append(PackageProblem(extra, "present but not in the catalog"))
    if "data/metadata.xml" in on_disk:
        for reason in check_metadata(package_dir, archival_code, manifests.get("sha256", {})):
            name, _, text = reason.partition(": ")
            problems.append(PackageProblem(name, text))
    else:
        problems.append(PackageProblem("data/metadata.xml", "metadata missing"))
    return problems


def copy_checked(
    source: Path, partial: Path, expected: dict[str, tuple[str, str, int]], archival_code: str
) -> list[PackageProblem]:
    """A published package copied into `partial` and checked there exactly as verify checks an original
    (both manifests, the catalog's hashes, the metadata), so a copy is handed out or backed up only when
    it is whole. On any problem the partial copy is removed and the problems are returned."""
    shutil.rmtree(partial, ignore_errors=True)  # what a crashed earlier copy left
    shutil.copytree(source, partial)
    problems = verify_package_dir(partial, expected, archival_code)
    if problems:
        shutil.rmtree(partial, ignore_errors=True)
    return problems


def remove_packages(root: Path, packages: list[tuple[str, str]], trash: Path) -> int:
    """Published packages deleted (销毁): each renamed at once into `trash` (hidden, same filesystem), so none
    is ever seen half-deleted, then the trash and the 档号 folders left empty go. Safe to run again after an
    interruption. `packages` are (name in the trash, path relative to `root`); returns how many were moved."""
    trash.mkdir(parents=True, exist_ok=True)
    # every 档号 folder, also those an interrupted run already emptied: they are removed below once empty
    parents = {(root / rel).parent for _, rel in packages}
    moved = 0
    for name, rel in packages:
        path = root / rel
        if path.is_dir():
            os.rename(path, trash / name)
            moved += 1
    for parent in parents:
        if parent.is_dir():
            fsync_dir(parent)
    shutil.rmtree(trash)
    fsync_dir(trash.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        if parent.is_dir() and not any(parent.iterdir()):  # the 档号 folder once its last version went
            parent.rmdir()
            fsync_dir(parent.parent)
    return moved
