"""Every MT940/MT942 file in ../shared/peers/mt940 against what the mt-940 library reads from it.

Well-formed files must agree on account, transaction count, each signed amount and value date, and the
final opening/closing balances. Fragments and broken files must be refused with the reason listed here.
One documented disagreement: ``RC`` (reversal of credit) is a debit per SWIFT; the library books it as a
credit, and the file's own closing balance proves the library wrong (checked below).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from connectors.bank import mt940
from connectors.bank.errors import StatementError

from .helpers import MT940_DIR

EXPECTED = json.loads((MT940_DIR / "expected.json").read_text())

# file -> words the refusal must contain (each one is a fragment or a broken file, see peers/README.md)
REFUSED = {
    "betterplace/amount_formats.sta": "no :20:",
    "betterplace/currency_in_25.sta": "no :20:",
    "betterplace/empty_86.sta": "no :20:",
    "betterplace/empty_entry_date.sta": "no :20:",
    "betterplace/empty_line.sta": "has no account :25:",
    "betterplace/missing_crlf_at_end.sta": "no :20:",
    "betterplace/sepa_snippet_broken.sta": "second :25:",
    "cmxl/account_balance_credit.sta": "no :20:",
    "cmxl/account_balance_debit.sta": "no :20:",
    "cmxl/account_identification_iban.sta": "no :20:",
    "cmxl/account_identification_legacy.sta": "no :20:",
    "cmxl/available_balance.sta": "no :20:",
    "cmxl/closing_balance.sta": "no :20:",
    "cmxl/reference.sta": "has no account :25:",
    "cmxl/statement_details.sta": "no :20:",
    "cmxl/statement_line.sta": "no :20:",
    "cmxl/statement_number.sta": "no :20:",
    "self-provided/account_identification.sta": "no statement number :28C:",
    "self-provided/empty_non_swift.sta": "no :20:",
    "self-provided/gv_codes.sta": "no closing balance :62F: (file truncated?)",
    "self-provided/invalid_statement.sta": "no MT940/MT942 statement found",
    "self-provided/multiline.sta": "after the end of the message",
    "self-provided/raphaelm.sta": "3-letter currency",
    "self-provided/sparkassen.sta": "no :20:",
}
# (file, index in the flat transaction list) where SWIFT's RC = debit disagrees with the library
RC_REVERSALS = {("betterplace/sepa_mt9401.sta", 5), ("betterplace/sepa_mt9401.sta", 18)}


def test_every_peer_file_is_listed() -> None:
    on_disk = {str(p.relative_to(MT940_DIR)) for p in MT940_DIR.rglob("*.sta")}
    assert on_disk == set(EXPECTED)
    assert set(REFUSED) <= on_disk


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - set(REFUSED)))
def test_agrees_with_reference(name: str) -> None:
    want = EXPECTED[name]
    stmts = mt940.parse((MT940_DIR / name).read_bytes(), source=name)
    entries = [e for s in stmts for e in s.entries]
    assert len(entries) == want["transaction_count"]
    for i, (got, ref) in enumerate(zip(entries, want["transactions"], strict=True)):
        ref_amount = Decimal(ref["amount"])
        if (name, i) in RC_REVERSALS:
            assert got.reversal and got.amount == -ref_amount
        else:
            assert got.amount == ref_amount, f"{name} entry {i} at {got.position}"
        assert str(got.value_date) == ref["date"]
        if ref["currency"]:
            assert got.currency == ref["currency"]
    assert stmts[-1].account == want["account"]
    finals = [s.closing_balance for s in stmts if s.closing_balance and s.closing_balance.type == "closing"]
    if want["final_closing_balance"] is None:
        assert finals == []
    else:
        cb = finals[-1]
        assert cb.amount == Decimal(want["final_closing_balance"]["amount"])
        assert str(cb.date) == want["final_closing_balance"]["date"]
        assert cb.currency == want["final_closing_balance"]["currency"]
    openings = [s.opening_balance for s in stmts if s.opening_balance and s.opening_balance.type == "opening"]
    if want["final_opening_balance"] is not None:
        assert openings[-1].amount == Decimal(want["final_opening_balance"]["amount"])


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_broken_or_fragment_is_refused_clearly(name: str) -> None:
    with pytest.raises(StatementError) as info:
        mt940.parse((MT940_DIR / name).read_bytes(), source=name)
    msg = str(info.value)
    assert msg.startswith(name + ": ")
    assert "line" in msg
    assert REFUSED[name] in msg
    assert "\n" not in msg


def test_rc_is_a_debit_and_the_balance_proves_it() -> None:
    name = "betterplace/sepa_mt9401.sta"
    stmts = mt940.parse((MT940_DIR / name).read_bytes(), source=name)
    first = stmts[0]
    rc = [e for e in first.entries if e.reversal]
    assert [e.amount for e in rc] == [Decimal("-204.88")]
    assert first.balance_check == "ok"
    assert all(s.balance_check == "ok" for s in stmts)


def test_german_structured_86_with_sepa_keywords() -> None:
    name = "cmxl/statement_details.sta"
    text = (MT940_DIR / name).read_text()
    details = mt940.parse_details(text.split(":86:", 1)[1])
    assert details["gvc"] == "171"
    assert details["booking_text"] == "SEPA LASTSCHRIFT KUNDE"
    assert details["sepa_eref"] == "TRX-0A4A47C3-F846-4729-8A1B-5DF620F"
    assert details["sepa_mref"] == "CAC97D2144174318AC18D9BF815BD4FB"
    assert details["sepa_cred"] == "DE98ZZZ09999999999"
    assert details["remittance"] == "FOO TRX-0A4A47C3-F846-4729-8A1B-5DF620F"
    assert details["counterparty_name"] == "Peter Pan"
    assert details["counterparty_bank"] == "HYVEDEMMXXX"


def test_details_60_to_63_and_counterparty() -> None:
    name = "self-provided/details_60-63.sta"
    (e,) = mt940.parse((MT940_DIR / name).read_bytes(), source=name)[0].entries
    assert e.end_to_end_id is not None and e.end_to_end_id.startswith("123/123/12345-----L110")
    assert e.extra["sepa_abwa"] == "Finanzamt Muenchen Abteilung Erhebung"  # ?62 + ?63 joined
    assert e.counterparty_account == "DE99700500000000012345"
    assert e.counterparty_name == "Finanzamt Muenchen Abteilung Erhebung"
    assert e.bank_transaction_code == "105"


def test_february_30_is_moved_to_month_end_and_kept_raw() -> None:
    name = "self-provided/february_30.sta"
    (e,) = mt940.parse((MT940_DIR / name).read_bytes(), source=name)[0].entries
    assert str(e.value_date) == "2016-02-29"
    assert e.extra["raw_value_date"] == "160230"
    assert str(e.booking_date) == "2016-03-01"
