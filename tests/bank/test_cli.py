"""The real CLI in a subprocess: one JSON object on success, one stderr line and non-zero exit on refusal."""

from __future__ import annotations

import json

import pytest

from .helpers import CAMT_DIR, FIXTURES, MT940_DIR, run_cli


def test_parse_mt940_prints_statements() -> None:
    r = run_cli("parse", str(MT940_DIR / "jejik" / "generic.sta"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    s1, s2 = out["statements"]
    assert (s1["account"], s1["currency"], s1["opening_balance"], s1["closing_balance"]) == (
        "11111111",
        "EUR",
        "100.00",
        "90.00",
    )
    assert s1["balance_check"] == "ok"
    e = s1["entries"][0]
    assert (e["amount"], e["booking_date"], e["value_date"]) == ("-10.00", "2011-01-01", "2011-01-01")
    assert out["sequence_findings"] == []
    assert r.stderr == ""


def test_parse_camt_with_explicit_format() -> None:
    r = run_cli("parse", str(CAMT_DIR / "camt053.v2.multi.statement.xml"), "--format", "camt")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [s["closing_balance"] for s in out["statements"]] == ["27.00", "20.00"]
    assert [s["entries"][0]["amount"] for s in out["statements"]] == ["8.85", "-7.00"]


def test_parse_chinese_csv_with_layout() -> None:
    r = run_cli("parse", str(FIXTURES / "icbc_gbk.csv"), "--format", "cn-csv", "--layout", "icbc")
    assert r.returncode == 0, r.stderr
    (s,) = json.loads(r.stdout)["statements"]
    assert s["entries"][0]["counterparty_name"] == "上海客户贸易有限公司"
    assert s["balance_check"] == "ok"


def test_unbalanced_file_is_read_and_flagged() -> None:
    r = run_cli("parse", str(MT940_DIR / "jejik" / "ing.sta"))
    assert r.returncode == 0
    (s,) = json.loads(r.stdout)["statements"]
    assert s["balance_check"].startswith("does not add up:") and "off by 49.06 EUR" in s["balance_check"]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        (MT940_DIR / "self-provided" / "raphaelm.sta", "line 27 (:62M:)"),
        (MT940_DIR / "betterplace" / "sepa_snippet_broken.sta", "line 6 (:25:)"),
        (CAMT_DIR / "camt053.v2.wrong.xml", "has no Stmt element"),
        (FIXTURES / "cmb_utf8bom.csv", "wrong layout or wrong encoding"),
    ],
)
def test_refusal_is_one_line_no_traceback(path, words: str) -> None:
    args = ["parse", str(path)]
    if path.suffix == ".csv":
        args += ["--layout", "icbc"]
    r = run_cli(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(str(path))
    assert words in lines[0]


def test_xml_bomb_via_cli(tmp_path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><x>&b;</x></Document>\n'
    )
    r = run_cli("parse", str(bomb))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "DOCTYPE" in r.stderr


def test_missing_file_and_bad_format_option(tmp_path) -> None:
    r = run_cli("parse", str(tmp_path / "nope.sta"))
    assert r.returncode == 3 and "cannot read" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("parse", str(FIXTURES / "ofx1_checking.ofx"), "--format", "xls")
    assert r.returncode == 2 and "unknown format 'xls'" in r.stderr
