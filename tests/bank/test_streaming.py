"""Fast paths stay exact: streamed MT940 equals whole-file parsing, trusted models equal validated ones,
memory stays flat as the file grows, and camt's filtered events keep the old refusal order."""

from __future__ import annotations

import io
import tracemalloc
from typing import Any

import pytest
from pydantic import BaseModel

from canonical_model.bank_statement import BankStatement
from connectors.bank import camt, mt940
from connectors.bank.errors import StatementEncodingError, StatementError, StatementFormatError

from .helpers import CAMT_DIR, MT940_DIR
from .test_bad_input import GOOD_MT940

MT940_FILES = sorted(MT940_DIR.rglob("*.sta"))
CAMT_FILES = sorted(CAMT_DIR.glob("*.xml"))


def _readable(path: Any) -> bool:
    try:
        (camt if path.suffix == ".xml" else mt940).parse(path.read_bytes(), source=path.name)
    except StatementError:
        return False
    return True


READABLE = [p for p in MT940_FILES + CAMT_FILES if _readable(p)]


class _Pipe:
    """A non-seekable stream returning short reads, like a socket or a pipe."""

    def __init__(self, data: bytes, step: int = 777) -> None:
        self._buf = io.BytesIO(data)
        self._step = step

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(self._step if n is None or n < 0 else min(n, self._step))


def _outcome(fn: Any) -> Any:
    try:
        return [s.to_json_dict() for s in fn()]
    except StatementError as e:
        return (type(e).__name__, str(e))


def _assert_like_validated(model: BaseModel) -> None:
    cls = type(model)
    again = cls(**{k: getattr(model, k) for k in model.model_fields_set})
    assert again == model
    assert list(again.__dict__) == list(model.__dict__) == list(cls.model_fields)
    assert again.model_fields_set == model.model_fields_set
    assert again.model_dump() == model.model_dump()
    assert repr(again) == repr(model)


@pytest.mark.parametrize("path", MT940_FILES, ids=lambda p: str(p.relative_to(MT940_DIR)))
def test_mt940_stream_equals_whole_file(path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data = path.read_bytes()
    whole = _outcome(lambda: list(mt940.iter_statements(mt940.decode(data, "f"), source="f")))
    assert _outcome(lambda: mt940.parse(data, source="f")) == whole
    monkeypatch.setattr(mt940, "_CHUNK", 61)  # lines and UTF-8 sequences cut across reads
    assert _outcome(lambda: list(mt940.iter_stream(io.BytesIO(data), source="f"))) == whole
    assert _outcome(lambda: list(mt940.iter_stream(_Pipe(data, 13), source="f"))) == whole


def test_parse_file_reads_from_disk(tmp_path: Any) -> None:
    p = tmp_path / "s.sta"
    p.write_bytes(GOOD_MT940)
    (s,) = mt940.parse_file(p)
    assert s.source == str(p) and s.balance_check == "ok"
    assert mt940.parse_file(p, source="x")[0].source == "x"


@pytest.mark.parametrize("path", READABLE, ids=lambda p: p.name)
def test_trusted_models_equal_validated_ones(path: Any) -> None:
    parser = camt if path.suffix == ".xml" else mt940
    for s in parser.parse(path.read_bytes(), source=path.name):
        assert BankStatement.model_validate(s.model_dump()) == s
        for e in s.entries:
            _assert_like_validated(e)
            for d in e.details:
                _assert_like_validated(d)
        if len(s.entries) > 1:  # each instance has its own fields_set: assigning to one leaves the others
            s.entries[0].balance_after = s.entries[0].amount
            assert "balance_after" in s.entries[0].model_fields_set
            assert "balance_after" not in s.entries[1].model_fields_set


def _latin1_statement(umlaut_line: bytes) -> bytes:
    return GOOD_MT940.replace(b"Rechnung 2", umlaut_line)


def test_mt940_encoding_chosen_for_the_whole_file() -> None:
    utf8_then_latin1 = _latin1_statement("Müller".encode()) + _latin1_statement(b"M\xfcller")
    want = mt940.parse(utf8_then_latin1, source="f")  # not valid UTF-8 as a whole: all Latin-1
    assert "MÃ¼ller" in want[0].entries[1].remittance  # type: ignore[operator]
    assert mt940.decode(utf8_then_latin1, "f").count("\n") + 1 == len(utf8_then_latin1.split(b"\n"))
    # a pipe cannot be read twice: Latin-1 after plain ASCII is fine, after UTF-8 it is refused
    padding = GOOD_MT940 * 30  # the Latin-1 byte arrives in a later read than the first 4 KiB
    ascii_then_latin1 = padding + _latin1_statement(b"M\xfcller")
    got = list(mt940.iter_stream(_Pipe(ascii_then_latin1), source="f"))
    assert got[-1].entries[1].remittance == "Müller"
    assert got == mt940.parse(ascii_then_latin1, source="f")
    mixed = _latin1_statement("Müller".encode()) + padding + _latin1_statement(b"M\xfcller")
    assert mt940.parse(mixed, source="f")[0].entries[1].remittance == "MÃ¼ller"
    with pytest.raises(StatementEncodingError, match="partly UTF-8 and partly Latin-1"):
        list(mt940.iter_stream(_Pipe(mixed), source="f"))


def test_mt940_nul_and_utf16_refused_with_position() -> None:
    with pytest.raises(StatementEncodingError, match="byte 3"):
        mt940.parse("\ufeff:20:X".encode("utf-16-le"), source="f")
    late_nul = b"\xff\xfe" + b"A" * 9000 + b"\x00"
    with pytest.raises(StatementEncodingError, match="byte 9002"):
        list(mt940.iter_stream(_Pipe(late_nul), source="f"))


def _mt940_file(statements: int) -> bytes:
    out = []
    for n in range(statements):
        lines = [f":20:S{n}", ":25:DE89370400440532013000", f":28C:{n + 1}/1", ":60F:C240102EUR0,00"]
        for i in range(50):
            lines += [
                f":61:2401020102C1,00NTRFNONREF//B{n}-{i}",
                f":86:166?00GUTSCHRIFT?20EREF+E{n}-{i}?21SVWZ+Rechnung {n}-{i}?32Muster GmbH",
            ]
        lines += [":62F:C240102EUR50,00", "-"]
        out.append("\r\n".join(lines) + "\r\n")
    return "".join(out).encode()


def _peak_streaming(data: bytes) -> int:
    tracemalloc.start()
    try:
        n = sum(len(s.entries) for s in mt940.iter_stream(io.BytesIO(data), source="f"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == data.count(b":61:")
    return peak


def test_mt940_memory_stays_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mt940, "_CHUNK", 1 << 16)
    small, big = _mt940_file(50), _mt940_file(400)  # ~0.3 MB and ~2.3 MB
    peak_small, peak_big = _peak_streaming(small), _peak_streaming(big)
    assert peak_big < peak_small * 1.5, (peak_small, peak_big)
    assert peak_big < len(big) / 3


def test_camt_record_error_before_a_later_bad_container() -> None:
    """libxml2 builds ahead of the events: a wrong element after the statement must not be reported first."""
    doc = (CAMT_DIR / "camt053.v2.multi.statement.xml").read_bytes()
    broken = doc.replace(b"<CdtDbtInd>CRDT</CdtDbtInd>", b"", 1).replace(
        b"</Document>", b"<Junk/></Document>"
    )
    with pytest.raises(StatementFormatError, match=r"CdtDbtInd is None"):
        camt.parse(broken, source="f")
    with pytest.raises(StatementFormatError, match="element Junk where camt.053 requires BkToCstmrStmt"):
        camt.parse(doc.replace(b"</Document>", b"<Junk/></Document>"), source="f")


def test_camt_wrong_root_reported_even_when_the_xml_breaks() -> None:
    bad = b'<?xml version="1.0"?><Foo xmlns="urn:x"><Bar><Baz>'
    with pytest.raises(StatementFormatError, match="root element is 'Foo'"):
        camt.parse(bad, source="f")
