"""Bad input is refused with one clear line (file, place, reason), or flagged; never a traceback, never a leak."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from connectors.bank import bai2, camt, cn, detect, mt940, ofx
from connectors.bank.errors import (
    StatementEncodingError,
    StatementFormatError,
    StatementSecurityError,
    StatementValueError,
)

from .helpers import CAMT_DIR, FIXTURES, MT940_DIR

GOOD_MT940 = b""":20:STARTUMS
:25:10020030/1234567
:28C:5/1
:60F:C240102EUR1000,00
:61:2401020102D100,00NTRFNONREF//B1
:86:166?00GUTSCHRIFT?20EREF+E2E-1?21SVWZ+Rechnung 1
:61:2401020102C50,25NTRFNONREF//B2
:86:166?00GUTSCHRIFT?20SVWZ+Rechnung 2
:62F:C240102EUR950,25
-
"""

CAMT_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
{prolog}<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt><GrpHdr><MsgId>M1</MsgId><CreDtTm>2024-01-02T10:00:00</CreDtTm></GrpHdr>
<Stmt><Id>S1</Id><CreDtTm>2024-01-02T10:00:00</CreDtTm>
<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>
<Dt><Dt>2024-01-01</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{closing}</Amt><CdtDbtInd>CRDT</CdtDbtInd>
<Dt><Dt>2024-01-02</Dt></Dt></Bal>
<Ntry><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2024-01-02</Dt></BookgDt><ValDt><Dt>2024-01-02</Dt></ValDt>
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
<NtryDtls><TxDtls><RmtInf><Ustrd>{text}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>
"""


def camt_doc(
    prolog: str = "", closing: str = "150.00", amount: str = "50.00", ccy: str = "EUR", text: str = "ok"
) -> bytes:
    return CAMT_TEMPLATE.format(prolog=prolog, closing=closing, amount=amount, ccy=ccy, text=text).encode()


def test_good_samples_parse() -> None:
    (s,) = mt940.parse(GOOD_MT940, source="good.sta")
    assert s.balance_check == "ok"
    assert [e.amount for e in s.entries] == [Decimal("-100.00"), Decimal("50.25")]
    assert s.entries[0].end_to_end_id == "E2E-1"
    assert s.entries[0].remittance == "Rechnung 1"
    (c,) = camt.parse(camt_doc(), source="good.xml")
    assert c.balance_check == "ok"


# --- truncated -------------------------------------------------------------------------------------------
def test_truncated_mt940_is_refused_with_line() -> None:
    cut = GOOD_MT940[: GOOD_MT940.index(b":62F:")]
    with pytest.raises(StatementFormatError) as info:
        mt940.parse(cut, source="cut.sta")
    assert str(info.value).startswith("cut.sta: statement at line 1")
    assert "closing balance :62F: (file truncated?)" in str(info.value)


def test_truncated_camt_is_refused_with_line() -> None:
    doc = camt_doc()
    with pytest.raises(StatementFormatError) as info:
        camt.parse(doc[: len(doc) // 2], source="cut.xml")
    assert "cut.xml: line" in str(info.value)
    assert "not well-formed" in str(info.value)


def test_truncated_ofx_and_bai2() -> None:
    data = (FIXTURES / "ofx2_creditcard.ofx").read_bytes()
    with pytest.raises(StatementFormatError, match="truncated"):
        ofx.parse(data[: data.index(b"</BANKTRANLIST>")], source="cut.ofx")
    bai = (FIXTURES / "bai2_two_accounts.bai").read_bytes()
    with pytest.raises(StatementFormatError, match="99 file trailer"):
        bai2.parse(bai[: bai.index(b"98,")], source="cut.bai")


# --- encodings -------------------------------------------------------------------------------------------
def test_utf16_mt940_is_refused() -> None:
    with pytest.raises(StatementEncodingError, match="UTF-16"):
        mt940.parse(GOOD_MT940.decode().encode("utf-16"), source="u16.sta")


def test_gbk_file_under_a_utf8_only_layout_is_refused(tmp_path) -> None:
    layout = (cn.LAYOUT_DIR / "icbc.yaml").read_text(encoding="utf-8")
    layout = layout.replace("encodings: [gb18030, utf-8-sig]", "encodings: [utf-8-sig]")
    path = tmp_path / "icbc-utf8-only.yaml"
    path.write_text(layout, encoding="utf-8")
    with pytest.raises(StatementEncodingError) as info:
        cn.parse((FIXTURES / "icbc_gbk.csv").read_bytes(), source="icbc.csv", layout=str(path))
    assert "not utf-8-sig (invalid byte at offset" in str(info.value)


def test_utf8_csv_read_with_wrong_layout_names_both_causes() -> None:
    with pytest.raises(StatementFormatError) as info:
        cn.parse((FIXTURES / "cmb_utf8bom.csv").read_bytes(), source="cmb.csv", layout="icbc")
    assert "wrong layout or wrong encoding" in str(info.value)


def test_utf16_csv_is_refused() -> None:
    data = (FIXTURES / "ccb_gbk.csv").read_bytes().decode("gb18030").encode("utf-16")
    with pytest.raises(StatementEncodingError, match="UTF-16"):
        cn.parse(data, source="ccb16.csv", layout="ccb")


# --- XML attacks -----------------------------------------------------------------------------------------
BILLION_LAUGHS = """<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""


def test_billion_laughs_is_refused_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(StatementSecurityError) as info:
        camt.parse(camt_doc(prolog=BILLION_LAUGHS, text="&lol9;"), source="bomb.xml")
    assert time.perf_counter() - start < 1.0
    assert "bomb.xml: line 2: XML contains a <!DOCTYPE declaration" in str(info.value)


def test_external_entity_does_not_leak_passwd() -> None:
    xxe = '<!DOCTYPE d [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>\n'
    with pytest.raises(StatementSecurityError) as info:
        camt.parse(camt_doc(prolog=xxe, text="&xxe;"), source="xxe.xml")
    assert "root:" not in str(info.value)
    assert "XXE" in str(info.value)


def test_undeclared_entity_without_doctype_is_not_resolved() -> None:
    """Second wall: no DTD means the entity is undefined, and lxml refuses instead of reading anything."""
    with pytest.raises(StatementFormatError) as info:
        camt.parse(camt_doc(text="&xxe;"), source="ent.xml")
    assert "not well-formed" in str(info.value)
    assert "root:" not in str(info.value)


def test_ofx_with_doctype_is_refused() -> None:
    data = (
        (FIXTURES / "ofx2_creditcard.ofx")
        .read_bytes()
        .replace(b"<OFX>", b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><OFX>', 1)
    )
    with pytest.raises(StatementSecurityError):
        ofx.parse(data, source="x.ofx")


# --- balances that do not add up -------------------------------------------------------------------------
def test_unbalanced_mt940_is_flagged_with_the_difference() -> None:
    (s,) = mt940.parse(GOOD_MT940.replace(b"EUR950,25", b"EUR951,25"), source="off.sta")
    assert s.balance_check == (
        "does not add up: opening 1000.00 EUR + 2 entries -49.75 EUR = 950.25 EUR, "
        "but the closing balance is 951.25 EUR: off by 1.00 EUR."
    )


def test_unbalanced_camt_is_flagged() -> None:
    (s,) = camt.parse(camt_doc(closing="149.99"), source="off.xml")
    assert "off by -0.01 EUR" in s.balance_check


def test_running_balance_mismatch_in_chinese_export_is_flagged() -> None:
    data = (FIXTURES / "ccb_gbk.csv").read_bytes().decode("gb18030").replace("118500.00", "118400.00")
    (s,) = cn.parse(data.encode("gb18030"), source="ccb.csv", layout="ccb")
    assert s.balance_check.startswith("does not add up: at line 6")
    assert "off by -100.00 CNY" in s.balance_check


def test_bai2_control_total_mismatch_is_refused() -> None:
    data = (FIXTURES / "bai2_two_accounts.bai").read_bytes().replace(b"16,475,17500", b"16,475,17400")
    with pytest.raises(StatementFormatError) as info:
        bai2.parse(data, source="bad.bai")
    assert "line 7 (record 49)" in str(info.value)
    assert "control total 2500000" in str(info.value)


# --- decimal separators ----------------------------------------------------------------------------------
def test_dot_decimal_in_mt940_is_refused() -> None:
    with pytest.raises(StatementValueError) as info:
        mt940.parse(GOOD_MT940.replace(b"D100,00", b"D100.00"), source="dot.sta")
    assert "dot.sta: line 5 (:61:)" in str(info.value)
    assert "uses '.' as decimal separator" in str(info.value)


def test_comma_decimal_in_camt_is_refused() -> None:
    with pytest.raises(StatementValueError) as info:
        camt.parse(camt_doc(amount="50,00"), source="comma.xml")
    assert "Stmt[1]/Ntry[1]/Amt (line 10)" in str(info.value)
    assert "uses ',' as decimal separator" in str(info.value)


def test_comma_decimal_in_ofx_and_csv_is_refused() -> None:
    data = (FIXTURES / "ofx1_checking.ofx").read_bytes().replace(b"-120.45", b"-120,45")
    with pytest.raises(StatementValueError, match="uses ',' as decimal separator"):
        ofx.parse(data, source="c.ofx")
    csv = (FIXTURES / "cmb_utf8bom.csv").read_bytes().replace(b"3500.25", b'"3500,25"')
    with pytest.raises(StatementValueError, match="uses ',' as decimal separator"):
        cn.parse(csv, source="c.csv", layout="cmb")


# --- unknown currencies ----------------------------------------------------------------------------------
def test_unknown_currency_is_refused_everywhere() -> None:
    with pytest.raises(StatementValueError, match="'XYZ' is not an ISO 4217 code"):
        mt940.parse(GOOD_MT940.replace(b"C240102EUR1000", b"C240102XYZ1000"), source="x.sta")
    with pytest.raises(StatementValueError, match="'ABC' is not an ISO 4217 code"):
        camt.parse(camt_doc(ccy="ABC"), source="x.xml")
    with pytest.raises(StatementValueError, match="'QQQ' is not an ISO 4217 code"):
        ofx.parse(
            (FIXTURES / "ofx1_checking.ofx").read_bytes().replace(b"<CURDEF>USD", b"<CURDEF>QQQ"), source="o"
        )
    with pytest.raises(StatementValueError, match="'ZZZ' is not an ISO 4217 code"):
        bai2.parse(
            (FIXTURES / "bai2_two_accounts.bai").read_bytes().replace(b",USD,2/", b",ZZZ,2/"), source="b"
        )


def test_unknown_format_is_refused() -> None:
    with pytest.raises(StatementFormatError, match="not a recognised bank statement format"):
        detect.parse(b"hello world\n", source="x.txt")


def test_peer_snippet_never_invents_a_balance() -> None:
    name = "betterplace/amount_formats.sta"
    with pytest.raises(StatementFormatError):
        mt940.parse((MT940_DIR / name).read_bytes(), source=name)
    assert (CAMT_DIR / "camt053.v2.wrong.xml").exists()
