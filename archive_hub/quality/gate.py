"""Quality gate: turns GX failures and catalog checks into one clear quarantine reason per record."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from archive_hub.quality.gx_suite import run_suite
from canonical_model.record import ArchiveRecord


@dataclass
class Rejection:
    record_key: str
    reasons: list[str]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def _cents(value: Any) -> int:
    return int((value * 100).to_integral_value())


@dataclass(frozen=True)
class RecordFacts:
    """What the gate needs of one record: small and picklable, so records can be parsed in workers."""

    key: str
    row: dict[str, Any]  # one row of the GX data frame
    voucher: VoucherFacts | None


@dataclass(frozen=True)
class VoucherFacts:
    book_code: str
    fiscal_year: int
    period: int
    number: str | None  # the record's 凭证号
    date: dt.date
    debit_total: Decimal
    credit_total: Decimal


def facts_of(record: ArchiveRecord) -> RecordFacts:
    v = record.voucher
    voucher = (
        VoucherFacts(
            v.book_code, v.fiscal_year, v.period, record.voucher_no, v.date, v.debit_total, v.credit_total
        )
        if v is not None
        else None
    )
    return RecordFacts(record.source.business_id, _row(record), voucher)


def _row(record: ArchiveRecord) -> dict[str, Any]:
    v = record.voucher
    in_period = 1
    if v is not None and v.period <= 12:
        in_period = int(v.date.year == v.fiscal_year and v.date.month == v.period)
    return {
        "record_key": record.source.business_id,
        "title": record.title or None,
        "record_date": record.date.isoformat() if record.date else None,
        "fonds_no": record.fonds.fonds_no,
        "responsible": record.responsible or None,
        "category_item": record.category.item or None,
        "voucher_no": record.voucher_no,
        "book_code": v.book_code if v else None,
        "fiscal_year": v.fiscal_year if v else record.fiscal_year,
        "period": v.period if v else record.period,
        "debit_cents": _cents(v.debit_total) if v else 0,
        "credit_cents": _cents(v.credit_total) if v else 0,
        "line_count": len(v.lines) if v else 2,
        "date_in_period": in_period,
    }


def check_batch(
    records: list[RecordFacts], archived_numbers: dict[tuple[str, int, int, str], str] | None = None
) -> tuple[set[str], list[Rejection], dict[str, Any]]:
    """Split a batch into accepted keys and rejections, plus a small summary for XCom.

    `archived_numbers` maps (book, year, period, 凭证号) already in the catalog to the business id that
    holds it, so a number reused by a different voucher is caught across runs too.
    """
    by_key = {r.key: r for r in records}
    vouchers = [r.row for r in records if r.voucher is not None]
    others = [r.row for r in records if r.voucher is None]
    ok_v, failures, evaluated = run_suite(vouchers, "vouchers")
    ok_o, more, evaluated_o = run_suite(others, "records")
    failures += more
    ok, evaluated = ok_v and ok_o, evaluated + evaluated_o
    reasons: dict[str, list[str]] = defaultdict(list)
    duplicates: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for failure in failures:
        v = by_key[failure.record_key].voucher
        if failure.expectation == "expect_compound_columns_to_be_unique" and v is not None:
            duplicates[(v.book_code, v.fiscal_year, v.period, v.number)].append(failure.record_key)
        elif failure.expectation == "expect_column_pair_values_to_be_equal" and v is not None:
            reasons[failure.record_key].append(
                f"voucher {v.number} is not balanced: debit total {v.debit_total:.2f} ≠ credit total {v.credit_total:.2f} (difference {v.debit_total - v.credit_total:.2f})"
            )
        elif failure.expectation == "expect_column_values_to_not_be_null":
            column = next(iter(failure.values), "?")
            reasons[failure.record_key].append(f"required metadata {column} is missing")
        elif failure.expectation == "expect_column_values_to_be_between":
            column, value = next(iter(failure.values.items()), ("?", "?"))
            text = {
                "line_count": f"a voucher needs at least two lines, this one has {value}",
                "debit_cents": "voucher totals are negative",
                "date_in_period": f"voucher date {v.date if v else '?'} lies outside period {v.fiscal_year if v else '?'}/{v.period if v else '?'}",
            }.get(column, f"{column}={value} is out of range")
            reasons[failure.record_key].append(text)
        else:
            reasons[failure.record_key].append(f"{failure.expectation} failed for {failure.values}")
    for (book, year, period, number), keys in duplicates.items():
        ordered = sorted(keys, key=_key_order)
        for key in ordered[1:]:  # the first holder of a number keeps it; later ones wait for review
            reasons[key].append(
                f"voucher number {number} in book {book} {year}/{period:02d} is already used by source record {ordered[0]}"
            )
    for rec in records:
        v = rec.voucher
        if v is None or not archived_numbers:
            continue
        holder = archived_numbers.get((v.book_code, v.fiscal_year, v.period, v.number))
        if holder in by_key and (by_key[holder].voucher is None or by_key[holder].voucher.number != v.number):
            continue  # the holder is renumbered in this very batch (凭证整理): the number is free again
        if holder is not None and holder != rec.key:
            reasons[rec.key].append(
                f"voucher number {v.number} in book {v.book_code} {v.fiscal_year}/{v.period:02d} is already archived for source record {holder}"
            )
    rejected = [Rejection(key, list(dict.fromkeys(rs))) for key, rs in reasons.items()]
    accepted = {r.key for r in records if r.key not in reasons}
    summary = {
        "checked": len(records),
        "rejected": len(rejected),
        "expectations": evaluated,
        "gx_success": ok,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return accepted, rejected, summary


def _key_order(key: str) -> tuple[int, Any]:
    return (0, int(key)) if key.isdigit() else (1, key)
