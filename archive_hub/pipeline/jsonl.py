"""JSON Lines files between steps, written atomically (temp name, fsync, rename)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=json_default, separators=(",", ":"))


def write_lines(path: Path, rows: Iterable[Any]) -> int:
    return write_raw_lines(path, (dumps(row) for row in rows))


def read_lines(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, default=json_default, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_raw_lines(path: Path, lines: Iterable[str], *, durable: bool = True) -> int:
    """Lines that are already JSON (e.g. pydantic's model_dump_json), written atomically.

    `durable=False` skips the fsync, for hand-offs that a re-run rebuilds anyway (map's part files).
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")
            count += 1
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    return count


def read_raw_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line.rstrip("\n")


def byte_spans(path: Path, size: int) -> list[tuple[int, int]]:
    """(start, end) offsets cutting the file into pieces of about `size` bytes, each ending at a newline."""
    total = path.stat().st_size
    spans: list[tuple[int, int]] = []
    with path.open("rb") as fh:
        start = 0
        while start < total:
            fh.seek(min(start + max(size, 1), total) - 1)
            fh.readline()  # on to the end of the line that straddles the cut
            end = fh.tell()
            spans.append((start, end))
            start = end
    return spans


def line_spans(path: Path, lines: int) -> list[tuple[int, int]]:
    """(start, end) offsets cutting the file into pieces of `lines` non-blank lines (the last may be short)."""
    spans: list[tuple[int, int]] = []
    start = position = count = 0
    with path.open("rb") as fh:
        for line in fh:
            position += len(line)
            if line.strip():
                count += 1
                if count == lines:
                    spans.append((start, position))
                    start, count = position, 0
    if count:
        spans.append((start, position))
    return spans


def read_span_lines(path: Path, start: int, end: int) -> list[str]:
    """The non-blank lines between two offsets that `byte_spans` or `line_spans` produced."""
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    return [line for line in data.decode("utf-8").split("\n") if line.strip()]


def join_files(parts: list[Path], path: Path) -> None:
    """Concatenate part files into `path`, atomically and durably (temp name, fsync, rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
