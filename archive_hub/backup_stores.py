"""Where a backup (备份) lives: a folder on another disk, or an S3-compatible object store (异地备份).

Both give `archive_hub/backup.py` the same few operations, so a backup, its `--check` and a restore read
the same whichever the store is. A package counts as held only once it is whole: in a folder it is renamed
into view after its copy was verified; in an object store, whose objects cannot be renamed, a marker object
(`committed/<package path>.json`, listing each file's SHA-256, SM3 and size) is written after every object
of the package was read back and re-hashed. A run that stops half way leaves unmarked objects, which the
next run writes again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from archive_sink.durability import fsync_dir, syncfs
from archive_sink.filesystem import PackageProblem, copy_checked, remove_packages, verify_package_dir
from archive_sink.hashing import stream_digests
from archive_sink.object_store import ObjectStore, S3Location

Expected = dict[str, tuple[str, str, int]]  # file path in the package -> (SHA-256, SM3, size)

FOLDER_BATCH = 200  # packages copied between two syncfs calls
SMALL_OBJECT = 8 << 20  # files up to this size are sent in one request from memory
S3_WORKERS = 8  # packages in flight at once: an object store answers in milliseconds, not microseconds


class BackupStore(Protocol):
    """What a backup needs of the place it writes to."""

    label: str

    def open(self, writing: bool = True) -> None:
        """Reachable (and writable, when `writing`: then what an interrupted run left half done is cleared)."""

    def close(self) -> None: ...

    def holds(self, rel: str) -> bool: ...

    def add(self, source: Path, rel: str, expected: Expected, code: str) -> list[PackageProblem]:
        """A verified copy of the published package at `source`, not yet counted as held (see `publish`).
        Problems found in the original are returned at once (nothing is copied)."""

    def publish(self) -> tuple[int, list[str]]:
        """Copies added since the last call made durable and held: how many, and what went wrong."""

    @property
    def pending(self) -> int: ...

    def check(self, rel: str, expected: Expected, code: str) -> list[PackageProblem]:
        """The held copy re-read and checked exactly as `verify` checks an original."""

    def remove(self, packages: list[tuple[str, str]]) -> int:
        """Held copies of destroyed packages (name, path) removed; how many there were."""

    def catalog_partial(self, name: str) -> Path:
        """A local path to write the catalog snapshot to before it is stored."""

    def commit_catalog(self, partial: Path, name: str) -> str:
        """The snapshot made visible, after every package it lists; returns where it is."""

    def latest_catalog(self, into: Path) -> Path | None:
        """The newest catalog copy, copied into the folder `into`."""

    def fetch(self, rel: str, into: Path) -> None:
        """A held package's files copied into the (new) folder `into`."""


class FolderStore:
    """A folder: `archive/<package path>` as in the archive itself, `catalog/catalog-<time>.sqlite`."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self.label = str(destination)
        self.packages_root = destination / "archive"
        self.partial_root = self.packages_root / ".partial"
        self._pending: list[tuple[Path, Path]] = []

    def open(self, writing: bool = True) -> None:
        if not writing:
            if not self.packages_root.is_dir():
                raise FileNotFoundError(2, "no archive/ folder: not a backup", str(self.destination))
            return
        shutil.rmtree(self.partial_root, ignore_errors=True)  # what an interrupted run left behind
        self.partial_root.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.partial_root, ignore_errors=True)

    def holds(self, rel: str) -> bool:
        return (self.packages_root / rel).is_dir()

    def add(self, source: Path, rel: str, expected: Expected, code: str) -> list[PackageProblem]:
        partial = self.partial_root / str(len(self._pending))
        problems = copy_checked(source, partial, expected, code)
        if not problems:
            self._pending.append((partial, self.packages_root / rel))
        return problems

    @property
    def pending(self) -> int:
        return len(self._pending)

    def publish(self) -> tuple[int, list[str]]:
        """The staged copies made durable by one syncfs, renamed into view, the renames made durable."""
        if not self._pending:
            return 0, []
        syncfs(self.destination)
        parents = set()
        for partial, target in self._pending:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(partial, target)
            parents.add(target.parent)
        for parent in parents:
            fsync_dir(parent)
        count = len(self._pending)
        self._pending.clear()
        return count, []

    def check(self, rel: str, expected: Expected, code: str) -> list[PackageProblem]:
        return verify_package_dir(self.packages_root / rel, expected, code)

    def remove(self, packages: list[tuple[str, str]]) -> int:
        return remove_packages(self.packages_root, packages, self.partial_root / "destroyed")

    def catalog_partial(self, name: str) -> Path:
        folder = self.destination / "catalog"
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(".catalog-*.sqlite.partial"):  # an interrupted run's copy lists too much
            leftover.unlink()
        return folder / f".{name}.partial"

    def commit_catalog(self, partial: Path, name: str) -> str:
        final = partial.with_name(name)
        os.rename(partial, final)
        fsync_dir(final.parent)
        return str(final)

    def latest_catalog(self, into: Path) -> Path | None:
        copies = sorted((self.destination / "catalog").glob("catalog-*.sqlite"))
        if not copies:
            return None
        shutil.copyfile(copies[-1], into / copies[-1].name)
        return into / copies[-1].name

    def fetch(self, rel: str, into: Path) -> None:
        shutil.copytree(self.packages_root / rel, into)


class S3Store:
    """An S3 bucket and prefix: `archive/<package path>/<file>`, `committed/<package path>.json` (the marker
    that makes a package held) and `catalog/catalog-<time>.sqlite`."""

    def __init__(self, location: S3Location, store: ObjectStore | None = None) -> None:
        self.location = location
        self.store = store or ObjectStore(location)
        self.label = str(location)
        self._held: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[list[str]]] = []
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def open(self, writing: bool = True) -> None:
        self.store.check_access()
        marker_root = self.location.key("committed") + "/"
        self._held = {
            key.removeprefix(marker_root).removesuffix(".json")
            for key in self.store.keys(marker_root)
            if key.endswith(".json")
        }
        self._pool = ThreadPoolExecutor(S3_WORKERS, thread_name_prefix="backup-s3")
        self._scratch = tempfile.TemporaryDirectory(prefix="archive-hub-backup-")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def holds(self, rel: str) -> bool:
        return rel in self._held

    def add(self, source: Path, rel: str, expected: Expected, code: str) -> list[PackageProblem]:
        problems = verify_package_dir(
            source, expected, code
        )  # a backup of damaged bytes would hide the damage
        if problems:
            return problems
        assert self._pool is not None, "open() first"
        self._futures.append(self._pool.submit(self._upload, source, rel, expected, code))
        return []

    @property
    def pending(self) -> int:
        return len(self._futures)

    def _upload(self, source: Path, rel: str, expected: Expected, code: str) -> list[str]:
        """Every file sent and read back; the marker only when each read-back matches the catalog."""
        problems = []
        for name, (sha, sm3, size) in sorted(expected.items()):
            key = self.location.key("archive", rel, name)
            path = source / name
            if size <= SMALL_OBJECT:
                self.store.put(key, path.read_bytes())
            else:
                self.store.put_file(key, path)
            if stream_digests(self.store.stream(key)) != (sha, sm3, size):
                problems.append(f"{name}: the copy read back from {self.label} differs from what was sent")
        if problems:
            return problems
        marker = {"archival_code": code, "files": {n: list(v) for n, v in sorted(expected.items())}}
        self.store.put(
            self.location.key("committed", rel) + ".json",
            json.dumps(marker, ensure_ascii=False, indent=1).encode("utf-8"),
        )
        self._held.add(rel)
        return []

    def publish(self) -> tuple[int, list[str]]:
        done, problems = 0, []
        for future in self._futures:
            failed = future.result()  # an ObjectStoreError (unreachable, refused) stops the run
            if failed:
                problems.extend(failed)
            else:
                done += 1
        self._futures.clear()
        return done, problems

    def check(self, rel: str, expected: Expected, code: str) -> list[PackageProblem]:
        assert self._scratch is not None, "open() first"
        folder = Path(self._scratch.name) / "check"
        shutil.rmtree(folder, ignore_errors=True)
        try:
            self.fetch(rel, folder)
            return verify_package_dir(folder, expected, code)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def remove(self, packages: list[tuple[str, str]]) -> int:
        """The marker goes first, so a package half deleted is never taken for a held one."""
        removed = 0
        for _name, rel in packages:
            marker = self.location.key("committed", rel) + ".json"
            objects = list(self.store.keys(self.location.key("archive", rel) + "/"))
            if rel in self._held or objects:
                self.store.delete([marker])
                self.store.delete(objects)
                self._held.discard(rel)
                removed += 1
        return removed

    def catalog_partial(self, name: str) -> Path:
        assert self._scratch is not None, "open() first"
        return Path(self._scratch.name) / name

    def commit_catalog(self, partial: Path, name: str) -> str:
        key = self.location.key("catalog", name)
        with partial.open("rb") as fh:
            sent = stream_digests(iter(lambda: fh.read(1 << 20), b""))
        self.store.put_file(key, partial)
        if stream_digests(self.store.stream(key)) != sent:
            from archive_sink.object_store import ObjectStoreError

            raise ObjectStoreError(
                f"{self.label}: the catalog copy {key} read back differs from what was sent"
            )
        return f"s3://{self.location.bucket}/{key}"

    def latest_catalog(self, into: Path) -> Path | None:
        names = sorted(
            key for key in self.store.keys(self.location.key("catalog") + "/") if key.endswith(".sqlite")
        )
        if not names:
            return None
        target = into / names[-1].rsplit("/", 1)[-1]
        with target.open("wb") as fh:
            for chunk in self.store.stream(names[-1]):
                fh.write(chunk)
        return target

    def fetch(self, rel: str, into: Path) -> None:
        root = self.location.key("archive", rel) + "/"
        for key in self.store.keys(root):
            target = into / key.removeprefix(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as fh:
                for chunk in self.store.stream(key):
                    fh.write(chunk)


def open_store(destination: str | Path) -> FolderStore | S3Store:
    text = str(destination)
    if text.startswith("s3://"):
        return S3Store(S3Location.parse(text))
    return FolderStore(Path(destination))
