"""Making bytes durable: per-batch syncfs (group commit) or per-file fsync.

Group commit is how the sink reaches hundreds of packages a second: every staged file of a batch is
flushed by one syncfs(2) before anything is renamed into view, and the renames are flushed by a
second one before the catalog commits. The benchmark's raw baseline uses the same calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def syncfs(path: Path) -> None:
    """Flush every dirty page of the filesystem holding `path` (falls back to sync(2))."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(path))
    except AttributeError:  # pragma: no cover - non-Linux
        os.sync()
    finally:
        os.close(fd)


def move_into_view(moves: list[tuple[Path, Path]], filesystem: Path) -> None:
    """Finished copies (partial, target) made durable by one syncfs, renamed into view, and the renames made
    durable by another: the group-commit protocol of the sink, for backups and restores. `filesystem` is any
    path on the filesystem that holds them."""
    if not moves:
        return
    syncfs(filesystem)
    for partial, target in moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(partial, target)
    syncfs(filesystem)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str | Path, data: bytes, *, fsync: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temp file in the same folder, fsync, rename over. A file that
    already holds exactly `data` is left alone, so re-reading a source does not rewrite what it wrote."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_bytes(path: str | Path, expected_size: int | None = None) -> bytes:
    """A whole file in three or four syscalls (open, fstat, read, close), not Python's buffered-IO seven.

    The archive step reads every attachment and reads every staged file back; at thousands of files a
    second the syscalls of `Path.read_bytes` (fstat, ioctl, lseek, a second read) were measurable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size if expected_size is None else expected_size
        data = os.read(fd, size + 1)
        if len(data) == size:
            return data
        chunks = [data]  # shorter or longer than expected: read on until end of file
        while chunk := os.read(fd, max(size, 1 << 16)):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
