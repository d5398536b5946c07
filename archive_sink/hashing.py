"""哈希值: SHA-256 and SM3 (GB/T 32905, through OpenSSL 3) of the same bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest()


def stream_digests(blocks: Iterable[bytes]) -> tuple[str, str, int]:
    """(SHA-256, SM3, size) of bytes that arrive in pieces: a file, or an object read back from a store."""
    sha, sm3, size = hashlib.sha256(), hashlib.new("sm3"), 0
    for block in blocks:
        sha.update(block)
        sm3.update(block)
        size += len(block)
    return sha.hexdigest(), sm3.hexdigest(), size


def file_digests(path: Path, chunk: int = 1 << 20) -> tuple[str, str, int]:
    with path.open("rb") as fh:
        return stream_digests(iter(lambda: fh.read(chunk), b""))
