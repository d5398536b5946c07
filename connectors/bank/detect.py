"""Pick the parser for a bank file: by explicit format name or by sniffing the first bytes.

Why sniffing and not file extensions: banks name files .txt, .dat, .sta, .xml, .csv for anything; the
content says what it is. Order matters: XML and OFX headers are unambiguous, MT940 tags next, BAI2's
``01,`` record, then Chinese CSV/XLSX exports, which are recognised by a layout's header row.
"""

from __future__ import annotations

from collections.abc import Callable

from canonical_model.bank_statement import BankStatement
from connectors.bank import bai2, camt, cn, mt940, ofx
from connectors.bank.errors import StatementError, UnknownFormatError

FORMATS = ("auto", "mt940", "camt", "ofx", "bai2", "cn-csv")

_SNIFFERS: list[tuple[str, Callable[[bytes], bool]]] = [
    ("camt", camt.sniff),
    ("ofx", ofx.sniff),
    ("mt940", mt940.sniff),
    ("bai2", bai2.sniff),
    ("cn-csv", cn.sniff),
]


def detect(data: bytes, *, source: str) -> str:
    """Format name for ``data`` or a refusal that says what was seen."""
    for name, sniff in _SNIFFERS:
        if sniff(data):
            return name
    head = data[:40].decode("latin-1").replace("\r", "\\r").replace("\n", "\\n")
    raise UnknownFormatError(
        source,
        "byte 0",
        f"not a recognised bank statement format (MT940/MT942, camt.052/053/054, OFX, BAI2, "
        f"Chinese bank CSV/XLSX); file starts with {head!r}",
    )


def parse(data: bytes, *, source: str, fmt: str = "auto", layout: str | None = None) -> list[BankStatement]:
    """Parse with the named parser (``auto``: detected). Raises a ``StatementError`` subclass on refusal."""
    if fmt not in FORMATS:
        raise StatementError(source, None, f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = "cn-csv" if layout else detect(data, source=source)
    if fmt == "mt940":
        return mt940.parse(data, source=source)
    if fmt == "camt":
        return camt.parse(data, source=source)
    if fmt == "ofx":
        return ofx.parse(data, source=source)
    if fmt == "bai2":
        return bai2.parse(data, source=source)
    return cn.parse(data, source=source, layout=layout)
