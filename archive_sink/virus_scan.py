"""病毒检测 (四性检测, 安全性): attachments are scanned by a ClamAV daemon before they are archived.

Why clamd and its INSTREAM command: the daemon keeps the signature database loaded (a clamscan process
per file would load it every time), its signatures are kept current by freshclam wherever it runs, and
INSTREAM sends the bytes the hub already holds in memory, so the daemon needs no access to our files and
may run on another host. The protocol (docs.clamav.net, "ClamD Protocol"): `zINSTREAM\\0`, then chunks
of <4-byte big-endian length><data>, a zero length to end; the reply is `stream: OK` or
`stream: <signature> FOUND`. One connection per file: on a local socket it costs tens of microseconds.

A scanner that cannot be reached is never taken for a clean result: `ScannerUnavailable` fails the
archive step, so nothing is archived unscanned and the run can be repeated.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

CHUNK = 1 << 20


IN_FLIGHT = (
    4  # files sent to clamd at once: it scans each in a thread of its own; one at a time leaves it idle
)


class ScannerUnavailable(RuntimeError):
    """The configured scanner did not answer, or answered with an error: nothing may be archived unscanned."""


class ScanRefused(ValueError):
    """The scanner answers but will not scan this file (larger than its StreamMaxLength): the record is
    refused, not the run, so one oversized file cannot stop every run after it."""


@dataclass(frozen=True)
class ClamdScanner:
    """A clamd reached at `unix:///path/to/clamd.sock` or `tcp://host:3310` (ARCHIVE_HUB_CLAMD)."""

    url: str
    timeout: float = 60.0

    def _connect(self) -> socket.socket:
        parts = urlsplit(self.url)
        try:
            if parts.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(parts.path)
            elif parts.scheme == "tcp" and parts.hostname:
                sock = socket.create_connection((parts.hostname, parts.port or 3310), timeout=self.timeout)
            else:
                raise ScannerUnavailable(f"virus scanner {self.url!r}: use unix:///path or tcp://host:port")
        except OSError as exc:
            raise ScannerUnavailable(
                f"virus scanner {self.url} cannot be reached: {exc.strerror or exc}"
            ) from None
        return sock

    def _ask(self, command: bytes, data: bytes | None = None) -> str:
        with self._connect() as sock:
            try:
                sock.sendall(command)
                if data is not None:
                    self._stream(sock, data)
            except OSError as exc:  # clamd closes early on a stream over its limit, after saying so
                said = self._reply(sock)
                if not said:
                    raise ScannerUnavailable(
                        f"virus scanner {self.url} failed: {exc.strerror or exc}"
                    ) from None
                return said
            return self._reply(sock)

    @staticmethod
    def _stream(sock: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            chunk = view[start : start + CHUNK]
            sock.sendall(struct.pack("!I", len(chunk)))
            sock.sendall(chunk)
        sock.sendall(struct.pack("!I", 0))

    def _reply(self, sock: socket.socket) -> str:
        reply = b""
        try:
            while not reply.endswith(b"\0"):
                got = sock.recv(4096)
                if not got:
                    break
                reply += got
        except OSError as exc:
            if not reply:
                raise ScannerUnavailable(f"virus scanner {self.url} failed: {exc.strerror or exc}") from None
        return reply.rstrip(b"\0").decode("utf-8", "replace").strip()

    def version(self) -> str:
        """`ClamAV 1.4.6/27830/...`: engine, signature database version and date (what the check was made with)."""
        answer = self._ask(b"zVERSION\0")
        if not answer.startswith("ClamAV"):
            raise ScannerUnavailable(f"virus scanner {self.url} answered {answer!r} to VERSION")
        return answer

    def scan(self, data: bytes) -> str | None:
        """The name of the signature the bytes match, or None when clean."""
        answer = self._ask(b"zINSTREAM\0", data)
        if answer == "stream: OK":
            return None
        if answer.startswith("stream: ") and answer.endswith(" FOUND"):
            return answer.removeprefix("stream: ").removesuffix(" FOUND")
        if "size limit exceeded" in answer:
            raise ScanRefused(
                f"{len(data):,} bytes are more than the scanner {self.url} takes ({answer}); "
                "raise StreamMaxLength in its clamd.conf"
            )
        raise ScannerUnavailable(f"virus scanner {self.url} could not scan: {answer}")
