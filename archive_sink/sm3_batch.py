"""SM3 of many messages at once: the multi-buffer library in native/sm3_multi.c, else OpenSSL.

The archive step hashes every attachment of a batch with SM3 (GB/T 32905). OpenSSL hashes one message
at a time in portable C (about 130 µs for 50 KB here); the multi-buffer library hashes up to 16 side by
side in vector registers, about five times faster. It is compiled on this machine by `make setup`
(or on first use) with the C compiler it finds, and loaded only after it has given OpenSSL's digests
for a set of known messages. Without a compiler, or with ARCHIVE_HUB_SM3=openssl, OpenSSL does the work:
the digests are the same either way, only the speed differs.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "native" / "sm3_multi.c"
BUILD_DIR = Path(__file__).parent / "native" / "_build"
CFLAGS = ("-O3", "-shared", "-fPIC", "-std=c11")


def library_path() -> Path:
    """Where the library built from this very source lives (a changed source never loads an old build)."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    return BUILD_DIR / f"sm3_multi-{digest}.so"


def build() -> Path | None:
    """Compile the library if it is not there yet; None when no C compiler is found or it fails (logged)."""
    target = library_path()
    if target.exists():
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        log.info("no C compiler found: SM3 is computed by OpenSSL, one message at a time")
        return None
    try:  # an installed copy may sit in a read-only site-packages: then OpenSSL hashes
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=BUILD_DIR, suffix=".so.tmp")
        os.close(fd)
    except OSError as exc:
        log.warning("cannot build %s in %s, SM3 falls back to OpenSSL: %s", SOURCE.name, BUILD_DIR, exc)
        return None
    try:
        done = subprocess.run(
            [compiler, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            log.warning("building %s failed, SM3 falls back to OpenSSL: %s", SOURCE.name, done.stderr.strip())
            return None
        os.replace(tmp, target)  # two processes building at once both publish a whole file
        return target
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("building %s failed, SM3 falls back to OpenSSL: %s", SOURCE.name, exc)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _call(lib: ctypes.CDLL, messages: Sequence[bytes]) -> list[str]:
    count = len(messages)
    pointers = (ctypes.c_char_p * count)(*messages)  # point at the bytes objects' own buffers: no copy
    lengths = (ctypes.c_uint64 * count)(*map(len, messages))
    out = ctypes.create_string_buffer(32 * count)
    lib.sm3_many(count, pointers, lengths, out)  # ctypes releases the GIL for the call
    raw = out.raw
    return [raw[i : i + 32].hex() for i in range(0, 32 * count, 32)]


def _known_answers() -> list[bytes]:
    """Every padding case (lengths around the 56- and 64-byte boundaries) and multi-block messages."""
    pattern = bytes(range(256)) * 40
    return [b"abc", b"abcd" * 16] + [pattern[:n] for n in (*range(0, 200), 1000, 4095, 4096, 10_001)]


@cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("ARCHIVE_HUB_SM3", "").lower() == "openssl":
        return None
    path = build()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        lib.sm3_many.argtypes = [
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_uint64),
            ctypes.c_char_p,
        ]
        lib.sm3_many.restype = None
    except (OSError, AttributeError) as exc:
        log.warning("cannot load %s, SM3 falls back to OpenSSL: %s", path, exc)
        return None
    messages = _known_answers()
    if _call(lib, messages) != [hashlib.new("sm3", m).hexdigest() for m in messages]:
        log.error("%s differs from OpenSSL on known messages: not used, SM3 falls back to OpenSSL", path)
        return None
    return lib


def accelerated() -> bool:
    """Whether the multi-buffer library is in use (for reports and tests)."""
    return _library() is not None


def sm3_hexdigests(messages: Sequence[bytes]) -> list[str]:
    """SM3 of each message, as lowercase hex, in order."""
    lib = _library()
    if lib is None or len(messages) < 2:
        return [hashlib.new("sm3", m).hexdigest() for m in messages]
    return _call(lib, [m if type(m) is bytes else bytes(m) for m in messages])


def report_setup() -> None:
    """`make setup`: build now rather than in the first archive step, and say so when OpenSSL will hash."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not accelerated():
        print("SM3: multi-buffer library not in use; OpenSSL computes SM3 (same digests, slower)")
