"""camt messages are validated, while streaming, against the vendored official ISO 20022 XSDs."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from lxml import etree

from connectors.bank import camt
from connectors.bank.errors import StatementFormatError, StatementSecurityError
from connectors.bank.sample_statements import sample_files

from .helpers import CAMT_DIR
from .test_bad_input import camt_doc

NS_RE = re.compile(rb'xmlns="urn:iso:std:iso:20022:tech:xsd:(camt\.05[234]\.001\.\d\d)"')
BTC = b"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"


def schema_errors(data: bytes) -> list[str]:
    """Errors of a whole-document validation against the XSD of the document's namespace."""
    m = NS_RE.search(data)
    assert m, "no camt namespace"
    schema = camt._schema(m.group(1).decode())
    assert schema is not None
    doc = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    schema.validate(doc.getroottree())
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def peer_files() -> list[Path]:
    return sorted(p for p in CAMT_DIR.glob("*.xml") if p.name != "camt053.v2.wrong.xml")


def test_every_vendored_xsd_compiles_without_loading_anything_else() -> None:
    names = sorted(p.stem for p in camt._XSD_DIR.glob("*.xsd"))
    assert len(names) == 24
    for name in names:
        assert camt._schema(name) is not None


@pytest.mark.parametrize("path", peer_files(), ids=lambda p: p.name)
def test_valid_peer_files_are_schema_valid_and_parse(path: Path) -> None:
    data = path.read_bytes()
    assert schema_errors(data) == []
    assert camt.parse(data, source=path.name)


def test_peer_corpus_is_complete() -> None:
    assert len(peer_files()) == 25


def test_valid_document_passes() -> None:
    assert schema_errors(camt_doc()) == []
    (s,) = camt.parse(camt_doc(), source="good.xml")
    assert len(s.entries) == 1


def test_generated_samples_are_schema_valid() -> None:
    files = {n: d for n, d in sample_files().items() if n.startswith("camt053_CNY_")}
    complete = {n: d for n, d in files.items() if b"</Document>" in d}
    assert len(complete) >= 2
    for name, data in complete.items():
        assert schema_errors(data) == [], name
        assert camt.parse(data, source=name)


def test_missing_mandatory_element_is_refused_with_schema_message_and_line() -> None:
    doc = camt_doc().replace(BTC, b"")
    with pytest.raises(StatementFormatError) as info:
        camt.parse(doc, source="nobtc.xml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == (
        "nobtc.xml: line 13: schema camt.053.001.02: Element 'NtryDtls': This element is not expected. "
        "Expected is one of ( AcctSvcrRef, Avlbty, BkTxCd )."
    )
    assert doc.splitlines()[12].startswith(b"<NtryDtls>")


def test_wrong_type_is_refused() -> None:
    doc = camt_doc(amount="50.123456")  # the reader accepts it; the XSD allows 5 fraction digits
    with pytest.raises(StatementFormatError) as info:
        camt.parse(doc, source="type.xml")
    msg = str(info.value)
    assert re.fullmatch(r"type\.xml: line \d+: schema camt\.053\.001\.02: Element 'Amt': .*", msg), msg
    assert "fractionDigits" in msg or "not a valid value" in msg


def test_too_long_text_is_refused() -> None:
    doc = camt_doc().replace(b"<MsgId>M1</MsgId>", b"<MsgId>" + b"M" * 36 + b"</MsgId>")
    with pytest.raises(
        StatementFormatError, match=r"^long\.xml: line 3: schema camt\.053\.001\.02: Element 'MsgId'"
    ):
        camt.parse(doc, source="long.xml")


def test_not_wellformed_wins_over_schema() -> None:
    doc = camt_doc().replace(BTC, b"")  # invalid, and then cut
    for data in (doc[: len(doc) // 2], doc[: len(doc) - 40]):
        with pytest.raises(StatementFormatError) as info:
            camt.parse(data, source="cut.xml")
        assert re.match(r"cut\.xml: line \d+: XML is not well-formed \(truncated\?\)", str(info.value))
    mismatch = camt_doc().replace(b"</Acct>", b"</Acc>")
    with pytest.raises(StatementFormatError, match=r"line 5: XML is not well-formed.*tag mismatch"):
        camt.parse(mismatch, source="m.xml")


def test_truncated_unseekable_stream_still_refused_with_a_line() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._b = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self._b.read(n)

    doc = camt_doc()
    with pytest.raises(StatementFormatError) as info:
        list(camt.iter_statements(Pipe(doc[: len(doc) - 40]), source="pipe.xml"))  # type: ignore[arg-type]
    assert re.match(r"pipe\.xml: line \d+: XML is not well-formed \(truncated\?\)", str(info.value))


def test_wrong_file_message_does_not_depend_on_earlier_parses() -> None:
    wrong = (CAMT_DIR / "camt053.v2.wrong.xml").read_bytes()
    with pytest.raises(StatementFormatError) as first:
        camt.parse(wrong, source="w.xml")
    for bad in (camt_doc()[:300], camt_doc().replace(BTC, b""), camt_doc() + b"<x/>"):
        with pytest.raises(StatementFormatError):
            camt.parse(bad, source="other.xml")
    with pytest.raises(StatementFormatError) as again:
        camt.parse(wrong, source="w.xml")
    assert str(first.value) == str(again.value)
    assert "has no Stmt element" in str(again.value)


def test_namespace_without_xsd_is_read_unvalidated() -> None:
    doc = camt_doc().replace(b"camt.053.001.02", b"camt.053.001.13").replace(BTC, b"")
    (s,) = camt.parse(doc, source="v13.xml")
    assert len(s.entries) == 1


def test_schema_that_loads_another_file_is_refused(tmp_path: Path) -> None:
    xsd = tmp_path / "evil.xsd"
    xsd.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        '<xs:import namespace="urn:x" schemaLocation="http://example.invalid/x.xsd"/></xs:schema>'
    )
    with pytest.raises(StatementSecurityError, match="never allowed to load another file"):
        camt.load_schema(xsd)
