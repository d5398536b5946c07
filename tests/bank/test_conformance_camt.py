"""Every camt.052/053/054 file in ../shared/peers/camt against the genkgo/camt reading next to it.

genkgo gives amounts in minor units, signed; its ``Message::getEntries`` lists the entries of the last
record only, so entries are matched to our statement by the record id each of them names.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from canonical_model.bank_statement import minor_units
from connectors.bank import camt
from connectors.bank.errors import StatementError

from .helpers import CAMT_DIR

XMLS = sorted(p.name for p in CAMT_DIR.glob("*.xml"))
BROKEN = {"camt053.v2.wrong.xml": "has no Stmt element"}


def _money(m: dict) -> Decimal:
    code = m["getCurrency"]["getCode"]
    return Decimal(m["getAmount"]) / (Decimal(10) ** minor_units(code))


def test_every_xml_has_a_reference_or_is_known_broken() -> None:
    for name in XMLS:
        assert (CAMT_DIR / name).with_suffix(".json").exists() or name in BROKEN


@pytest.mark.parametrize("name", [n for n in XMLS if n not in BROKEN])
def test_agrees_with_reference(name: str) -> None:
    ref = json.loads((CAMT_DIR / Path(name).with_suffix(".json")).read_text())
    stmts = camt.parse((CAMT_DIR / name).read_bytes(), source=name)
    assert len(stmts) == len(ref["getRecords"])
    by_id = {s.statement_id: s for s in stmts}
    records = [r for r in ref["getRecords"] if isinstance(r, dict)]
    records += [e["getRecord"] for e in ref["getEntries"]]
    for rec in records:
        ours = by_id[rec["getId"]]
        assert ours.account == rec["getAccount"]["getIdentification"]
        if isinstance(rec.get("getEntries"), list) and all(isinstance(x, dict) for x in rec["getEntries"]):
            assert len(ours.entries) == len(rec["getEntries"])
        for bal in rec.get("getBalances", []):
            if bal["getType"] == "closing":
                assert ours.closing_balance is not None
                assert ours.closing_balance.amount == _money(bal["getAmount"])
                assert ours.closing_balance.currency == bal["getAmount"]["getCurrency"]["getCode"]
        want_opening = [b for b in rec.get("getBalances", []) if b["getType"] == "opening"]
        if want_opening:
            assert ours.opening_balance is not None
            assert ours.opening_balance.amount == _money(want_opening[0]["getAmount"])
    for e in ref["getEntries"]:
        ours = by_id[e["getRecord"]["getId"]]
        got = ours.entries[e["getIndex"]]
        assert got.amount == _money(e["getAmount"])
        assert got.currency == e["getAmount"]["getCurrency"]["getCode"]
        assert (got.amount < 0) == (e["getCreditDebitIndicator"] == "DBIT")
        assert got.reversal == e["getReversalIndicator"]
        bd = e["getBookingDate"]
        assert (str(got.booking_date) if got.booking_date else None) == (bd["0"][:10] if bd else None) or (
            got.booking_time is not None
        )
        vd = e["getValueDate"]
        assert (str(got.value_date) if got.value_date else None) == (vd["0"][:10] if vd else None)
        details = e.get("getTransactionDetails") or []
        assert len(got.details) == len(details)
        assert got.status == {"BOOK": "booked", "PDNG": "pending", "INFO": "info"}[e["getStatus"]]
    # every entry of every statement accounted for
    assert sum(len(s.entries) for s in stmts) >= len(ref["getEntries"])


def test_multi_statement_file_gives_two_balanced_statements() -> None:
    stmts = camt.parse((CAMT_DIR / "camt053.v2.multi.statement.xml").read_bytes(), source="multi")
    assert [s.statement_id for s in stmts] == ["253EURNL26VAYB8060476890", "254EURNL26VAYB8060476890"]
    assert [str(s.entries[0].amount) for s in stmts] == ["8.85", "-7.00"]
    assert [s.balance_check for s in stmts] == ["ok", "ok"]


def test_several_txdtls_and_v8_party_names() -> None:
    (s,) = camt.parse((CAMT_DIR / "camt054.v8.xml").read_bytes(), source="v8")
    (e,) = s.entries
    assert len(e.details) == 3
    assert [d.counterparty_name for d in e.details] == [
        "Example Creditor 3 - V1",
        "Example Creditor 3 - V2",
        "Example Creditor 3 - V3",
    ]
    assert s.format == "camt.054.001.08"


def test_mismatched_balances_are_flagged_not_hidden() -> None:
    (s,) = camt.parse((CAMT_DIR / "camt053.v2.minimal.xml").read_bytes(), source="minimal")
    assert s.balance_check.startswith("does not add up")
    assert "EUR" in s.balance_check and "SEK" in s.balance_check


def test_wrong_file_is_refused() -> None:
    with pytest.raises(StatementError) as info:
        camt.parse((CAMT_DIR / "camt053.v2.wrong.xml").read_bytes(), source="camt053.v2.wrong.xml")
    assert BROKEN["camt053.v2.wrong.xml"] in str(info.value)
