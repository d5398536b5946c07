"""The Great Expectations (GX Core 1.x) suites run on every batch of mapped records.

Two suites: `vouchers` (记账凭证: balanced, numbered, dated in their period) and `records` (every
other 件, e.g. 银行对账单: the DA/T 94 elements every record must carry).

One row per record (integer cents, so equality is exact); failing rows are named by `record_key`
through GX's unexpected_index_list, and the gate turns each into a quarantine reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # GX's metric progress bars would flood task logs
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

RECORD_COLUMNS = ("title", "record_date", "fonds_no", "responsible", "category_item")
VOUCHER_COLUMNS = (*RECORD_COLUMNS, "voucher_no", "book_code")


@dataclass
class SuiteFailure:
    expectation: str
    record_key: str
    values: dict[str, Any]


@lru_cache(maxsize=1)
def _context() -> tuple[Any, Any]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas(name="mapped_batch").add_dataframe_asset(name="records")
    return context, asset.add_batch_definition_whole_dataframe("whole_batch")


@lru_cache(maxsize=4)
def _suite(kind: str) -> Any:
    import great_expectations as gx

    context, _ = _context()
    suite = context.suites.add(gx.ExpectationSuite(name=f"archive_hub_{kind}"))
    for column in VOUCHER_COLUMNS if kind == "vouchers" else RECORD_COLUMNS:
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=column))
    if kind != "vouchers":
        suite.add_expectation(
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="fiscal_year", min_value=1900, max_value=2999
            )
        )
        return suite
    suite.add_expectation(
        gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="debit_cents", column_B="credit_cents")
    )
    suite.add_expectation(
        gx.expectations.ExpectCompoundColumnsToBeUnique(
            column_list=["book_code", "fiscal_year", "period", "voucher_no"]
        )
    )
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToBeBetween(column="period", min_value=1, max_value=16)
    )
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="line_count", min_value=2))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="debit_cents", min_value=0))
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToBeBetween(column="date_in_period", min_value=1, max_value=1)
    )
    return suite


def run_suite(rows: list[dict[str, Any]], kind: str = "vouchers") -> tuple[bool, list[SuiteFailure], int]:
    """Validate the batch; returns (success, failures per record, number of expectations evaluated)."""
    import pandas as pd

    if not rows:
        return True, [], 0
    _, batch_definition = _context()
    suite = _suite(kind)
    frame = pd.DataFrame(rows)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["record_key"]}
    )
    failures: list[SuiteFailure] = []
    for item in result.results:
        if item.success:
            continue
        if item.exception_info and item.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"GX expectation {item.expectation_config.type} crashed: {item.exception_info.get('exception_message')}"
            )
        for entry in item.result.get("unexpected_index_list") or []:
            values = {k: v for k, v in entry.items() if k != "record_key"}
            failures.append(SuiteFailure(item.expectation_config.type, str(entry["record_key"]), values))
    return bool(result.success), failures, len(result.results)
