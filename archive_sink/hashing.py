"""哈希值: SHA-256 and SM3 (GB/T 32905, through OpenSSL 3) of the same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest()


def file_digests(path: Path, chunk: int = 1 << 20) -> tuple[str, str, int]:
    sha, sm3, size = hashlib.sha256(), hashlib.new("sm3"), 0
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            sha.update(block)
            sm3.update(block)
            size += len(block)
    return sha.hexdigest(), sm3.hexdigest(), size
