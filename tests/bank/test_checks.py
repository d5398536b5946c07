"""Checks across statements: sequence continuity, duplicate files/statements, intraday de-duplication, dates."""

from __future__ import annotations

import datetime as dt

from connectors.bank import checks, mt940

from .helpers import MT940_DIR


def stmt(number: str, opening: str, closing: str, lines: str = "", date: str = "240102") -> bytes:
    return (
        f":20:REF{number}\n:25:DE89370400440532013000\n:28C:{number}/1\n:60F:C{date}EUR{opening}\n"
        f"{lines}:62F:C{date}EUR{closing}\n-\n"
    ).encode()


def test_continuous_sequence_has_no_findings() -> None:
    data = stmt("1", "100,00", "90,00", ":61:2401020102D10,00NTRFNONREF\n") + stmt("2", "90,00", "90,00")
    assert checks.sequence_check(mt940.parse(data, source="a")) == []


def test_gap_in_statement_numbers_is_flagged() -> None:
    data = stmt("1", "100,00", "100,00") + stmt("3", "100,00", "100,00")
    (f,) = checks.sequence_check(mt940.parse(data, source="a"))
    assert f.kind == "gap"
    assert "statement 1 is followed by 3; 1 statement(s) missing" in f.message


def test_overlap_in_statement_numbers_is_flagged() -> None:
    data = stmt("2", "100,00", "100,00") + stmt("2", "100,00", "100,00")
    (f,) = checks.sequence_check(mt940.parse(data, source="a"))
    assert f.kind == "overlap"


def test_balance_break_is_flagged_when_numbers_say_nothing() -> None:
    name = "jejik/rabobank.sta"  # :28:00000/00 everywhere; the balances do not chain
    findings = checks.sequence_check(mt940.parse((MT940_DIR / name).read_bytes(), source=name))
    assert [f.kind for f in findings] == ["gap", "gap"]
    assert "opens at 1000.89 EUR but the previous one" in findings[0].message


def test_same_file_and_same_statement_twice() -> None:
    data = stmt("7", "100,00", "100,00")
    assert checks.file_fingerprint(data) == checks.file_fingerprint(bytes(data))
    a = mt940.parse(data, source="first.sta")
    b = mt940.parse(data.replace(b"\n", b"\r\n"), source="resent.sta")  # same statement, other bytes
    assert checks.file_fingerprint(data) != checks.file_fingerprint(data.replace(b"\n", b"\r\n"))
    assert checks.statement_fingerprint(a[0]) == checks.statement_fingerprint(b[0])
    assert len(checks.duplicate_statements(a + b)) == 1
    other = mt940.parse(stmt("8", "100,00", "100,00"), source="x")
    assert checks.duplicate_statements(a + other) == []


MT942 = """:20:INTRA{n}
:25:DE89370400440532013000
:28C:{n}/1
:34F:EUR0,
:13D:2401021{n}00+0100
{lines}-
"""
L1 = ":61:2401020102D10,00NTRFNONREF//B1\n:86:166?00X?20SVWZ+one\n"
L2 = ":61:2401020102C20,00NTRFNONREF//B2\n:86:166?00X?20SVWZ+two\n"
L3 = ":61:2401020102C20,00NTRFNONREF//B3\n:86:166?00X?20SVWZ+three\n"


def test_intraday_reports_are_deduplicated() -> None:
    first = MT942.format(n=1, lines=L1 + L2)
    second = MT942.format(n=2, lines=L1 + L2 + L3)  # cumulative: repeats B1 and B2
    reports = mt940.parse((first + second).encode(), source="942")
    assert [s.format for s in reports] == ["mt942", "mt942"]
    assert reports[0].created_at == dt.datetime(2024, 1, 2, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    unique = checks.dedupe_intraday(reports)
    assert [e.bank_reference for e in unique] == ["B1", "B2", "B3"]
    # the sequence check leaves intraday reports alone (they overlap by design)
    assert checks.sequence_check(reports) == []


def test_identical_bookings_within_one_report_are_both_kept() -> None:
    twice = MT942.format(n=1, lines=L1 + L1)
    again = MT942.format(n=2, lines=L1 + L1)
    unique = checks.dedupe_intraday(mt940.parse((twice + again).encode(), source="942"))
    assert len(unique) == 2


def test_entry_date_across_year_boundary() -> None:
    # value 31 Dec 2023, booked 2 Jan (next year); value 2 Jan 2024, booked 29 Dec (previous year)
    lines = ":61:2312310102D1,00NTRFNONREF\n:61:2401021229C1,00NTRFNONREF\n"
    (s,) = mt940.parse(stmt("1", "100,00", "100,00", lines, date="240102"), source="y")
    assert s.entries[0].value_date == dt.date(2023, 12, 31)
    assert s.entries[0].booking_date == dt.date(2024, 1, 2)
    assert s.entries[1].value_date == dt.date(2024, 1, 2)
    assert s.entries[1].booking_date == dt.date(2023, 12, 29)
    assert s.balance_check == "ok"
