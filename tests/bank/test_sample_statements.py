"""The demo's sample bank inbox: every good file is read exactly by the real parsers and adds up, the camt
statements continue each other and the January export, the cut-off April file is refused with one line,
and the inbox connector archives the good files and quarantines the broken one."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import BankStatementEntryRow, QuarantineRow
from archive_hub.pipeline import run_sync
from canonical_model.bank_statement import BankStatement
from connectors.bank import checks, detect
from connectors.bank.errors import StatementFormatError
from connectors.bank.sample_statements import ICBC_ACCOUNT, write_sample_inbox
from connectors.erp.sample_erp import seed as sample_erp
from tests.conftest import Hub

from .helpers import run_cli

GOOD = {  # file → (format, account, entries)
    "ICBC_11020212_202501.csv": ("cn-csv:icbc", ICBC_ACCOUNT, 25),
    "MT940_EUR_202501.sta": ("mt940", "DE72500700100123456700", 12),
    "camt053_CNY_202502.xml": ("camt.053.001.08", ICBC_ACCOUNT, 30),
    "camt053_CNY_202503.xml": ("camt.053.001.08", ICBC_ACCOUNT, 30),
}
BROKEN = "camt053_CNY_202504.xml"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = write_sample_inbox(tmp_path_factory.mktemp("sample") / "bank_inbox")
    return {p.name: p for p in paths}


def parse(path: Path) -> list[BankStatement]:
    return detect.parse(path.read_bytes(), source=path.name)


def test_writes_the_four_good_files_and_the_broken_one(sample: dict[str, Path]) -> None:
    assert list(sample) == [*GOOD, BROKEN]
    assert sorted(p.name for p in next(iter(sample.values())).parent.iterdir()) == sorted(
        sample
    )  # no temp left


@pytest.mark.parametrize("name", GOOD)
def test_good_file_parses_and_adds_up(sample: dict[str, Path], name: str) -> None:
    fmt, account, n = GOOD[name]
    (stmt,) = parse(sample[name])
    assert (stmt.format, stmt.account, len(stmt.entries)) == (fmt, account, n)
    assert stmt.balance_check == "ok"
    assert stmt.opening_balance and stmt.closing_balance
    total = sum((e.amount for e in stmt.entries), Decimal(0))
    assert stmt.opening_balance.amount + total == stmt.closing_balance.amount
    assert all(e.status == "booked" and e.bank_reference for e in stmt.entries)
    assert len({e.bank_reference for e in stmt.entries}) == n
    assert {e.booking_date.year for e in stmt.entries if e.booking_date} == {2025}


def test_icbc_export_is_gbk_with_running_balance_and_total_row(sample: dict[str, Path]) -> None:
    data = sample["ICBC_11020212_202501.csv"].read_bytes()
    text = data.decode("gbk")
    assert "户名: 华东精密制造有限公司" in text and "币种: 人民币" in text
    (stmt,) = parse(sample["ICBC_11020212_202501.csv"])
    assert stmt.account_owner == "华东精密制造有限公司"
    running = stmt.opening_balance.amount
    for e in stmt.entries:
        running += e.amount
        assert e.balance_after == running
    footer = text.strip().splitlines()[-1]
    debit = sum((-e.amount for e in stmt.entries if e.amount < 0), Decimal(0))
    credit = sum((e.amount for e in stmt.entries if e.amount > 0), Decimal(0))
    assert footer.startswith("合计,") and f'"{debit:,.2f}","{credit:,.2f}"' in footer
    remits = " ".join(e.remittance or "" for e in stmt.entries)
    for word in ("货款", "代发工资", "电费", "手续费", "增值税"):
        assert word in remits


def test_counterparties_are_the_sample_erps(sample: dict[str, Path]) -> None:
    customers, suppliers = set(sample_erp.CUSTOMERS), set(sample_erp.SUPPLIERS)
    for name in ("ICBC_11020212_202501.csv", "camt053_CNY_202502.xml", "camt053_CNY_202503.xml"):
        (stmt,) = parse(sample[name])
        received = {
            e.counterparty_name for e in stmt.entries if e.remittance and e.remittance.startswith("货款")
        }
        paid = {
            e.counterparty_name for e in stmt.entries if e.remittance and e.remittance.startswith("支付货款")
        }
        assert received and received <= customers, name
        assert paid and paid <= suppliers, name


def test_camt_entries_carry_parties_references_and_codes(sample: dict[str, Path]) -> None:
    for name in ("camt053_CNY_202502.xml", "camt053_CNY_202503.xml"):
        (stmt,) = parse(sample[name])
        assert stmt.account_owner == "华东精密制造有限公司" and stmt.currency == "CNY"
        for e in stmt.entries:
            assert e.counterparty_name and e.remittance and e.bank_transaction_code, e.position
            assert e.bank_reference and e.bank_reference.startswith("ICBC")
        transfers = [
            e for e in stmt.entries if e.bank_transaction_code.startswith(("PMNT/RCDT", "PMNT/ICDT"))
        ]
        assert len(transfers) >= 25
        assert all(e.counterparty_account and e.counterparty_bank and e.end_to_end_id for e in transfers)
        codes = {e.bank_transaction_code for e in stmt.entries}
        assert {
            "PMNT/RCDT/DMCT",
            "PMNT/ICDT/DMCT",
            "PMNT/ICDT/SALA",
            "PMNT/ICDT/TAXE",
            "ACMT/MDOP/CHRG",
        } <= codes


def test_mt940_has_german_structured_details(sample: dict[str, Path]) -> None:
    (stmt,) = parse(sample["MT940_EUR_202501.sta"])
    assert stmt.currency == "EUR" and stmt.statement_number == "00001"
    payments = [e for e in stmt.entries if e.bank_transaction_code == "116"]
    assert len(payments) == 8
    for e in payments:
        assert e.end_to_end_id and e.end_to_end_id == e.customer_reference
        assert e.remittance and e.remittance.startswith("RE ")
        assert e.counterparty_name and e.counterparty_name.endswith(("GmbH", "KG"))
        assert e.counterparty_account and e.counterparty_account.startswith("DE")
        assert e.extra["booking_text"] == "SEPA-UEBERWEISUNG"
    assert "Weber Spindeltechnik GmbH & Co. KG" in {e.counterparty_name for e in payments}
    for line in sample["MT940_EUR_202501.sta"].read_bytes().split(b"\r\n"):
        assert len(line) <= 65 + 4  # ":86:" + 65 characters of a wrapped field


def test_sequence_is_continuous_from_the_january_export(sample: dict[str, Path]) -> None:
    jan, feb, mar = (
        parse(sample[n])[0]
        for n in ("ICBC_11020212_202501.csv", "camt053_CNY_202502.xml", "camt053_CNY_202503.xml")
    )
    assert (feb.electronic_sequence, feb.legal_sequence) == ("2", "2")
    assert (mar.electronic_sequence, mar.legal_sequence) == ("3", "3")
    assert checks.sequence_check([feb, mar]) == []
    assert checks.sequence_check([jan, feb, mar]) == []  # no number in the export: balances decide
    assert jan.closing_balance.amount == feb.opening_balance.amount
    assert feb.closing_balance.amount == mar.opening_balance.amount
    # the check is not vacuous: March without February is a gap
    (finding,) = checks.sequence_check([jan, mar])
    assert finding.kind == "gap"


def test_broken_april_file_is_refused_with_one_line(sample: dict[str, Path]) -> None:
    path = sample[BROKEN]
    with pytest.raises(StatementFormatError) as info:
        parse(path)
    msg = str(info.value)
    assert msg.startswith(f"{BROKEN}: line ") and "\n" not in msg
    assert "not well-formed (truncated?)" in msg
    data = path.read_bytes()
    assert data.count(b"<Ntry>") > data.count(b"</Ntry>")  # cut inside an entry
    assert b"</Document>" not in data
    result = run_cli("parse", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and str(path) in result.stderr


@pytest.mark.parametrize("name", GOOD)
def test_cli_parses_the_good_files(sample: dict[str, Path], name: str) -> None:
    result = run_cli("parse", str(sample[name]))
    assert result.returncode == 0, result.stderr
    (stmt,) = json.loads(result.stdout)["statements"]
    assert stmt["balance_check"] == "ok" and len(stmt["entries"]) == GOOD[name][2]


def test_generation_is_deterministic_and_settled(tmp_path: Path) -> None:
    first = write_sample_inbox(tmp_path / "a")
    now = time.time()
    for p in first:  # dated back before anything reads them (reading moves atime)
        st = p.stat()
        assert 590 <= now - st.st_mtime <= 660 and 590 <= now - st.st_atime <= 660
    second = write_sample_inbox(tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    other = write_sample_inbox(tmp_path / "c", seed=8)
    assert [p.read_bytes() for p in other] != [p.read_bytes() for p in first]
    # rewriting replaces the files in place (atomically) and leaves no temporary file behind
    again = write_sample_inbox(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in again)


def test_other_fiscal_year(tmp_path: Path) -> None:
    paths = {p.name: p for p in write_sample_inbox(tmp_path, fiscal_year=2026)}
    assert "camt053_CNY_202602.xml" in paths and "ICBC_11020212_202601.csv" in paths
    for name, path in paths.items():
        if name == "camt053_CNY_202604.xml":
            continue
        (stmt,) = parse(path)
        assert stmt.balance_check == "ok"
        assert {e.booking_date.year for e in stmt.entries if e.booking_date} == {2026}


def test_inbox_archives_the_good_files_and_quarantines_the_broken_one(
    hub: Hub, sample: dict[str, Path]
) -> None:
    inbox = hub.home / "bank_inbox"
    inbox.mkdir()
    for path in sample.values():
        shutil.copy2(path, inbox / path.name)  # keeps the settled mtime
    summary = run_sync("bank_inbox", "t1")
    assert summary["status"] == "success", summary
    assert summary["read"] == 5 and summary["archived"] == len(GOOD) and summary["quarantined"] == 1, summary
    catalog = Catalog(hub.settings.catalog_url)
    try:
        with catalog.reading() as s:
            (item,) = s.execute(select(QuarantineRow)).scalars()
            entries = list(s.execute(select(BankStatementEntryRow)).scalars())
    finally:
        catalog.dispose()
    assert item.reason.startswith(f"{BROKEN}: line ") and "\n" not in item.reason
    assert "not well-formed" in item.reason
    kept = hub.home / "quarantine" / "bank_inbox" / f"{item.business_id}-{BROKEN}"
    assert kept.read_bytes() == sample[BROKEN].read_bytes()
    cny = [e for e in entries if e.account == ICBC_ACCOUNT]
    assert len(cny) == 25 + 30 + 30
    assert min(e.booking_date for e in cny) >= dt.date(2025, 1, 1)
    assert max(e.booking_date for e in cny) <= dt.date(2025, 3, 31)
    assert len([e for e in entries if e.currency == "EUR"]) == 12
