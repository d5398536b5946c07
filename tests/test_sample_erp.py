"""The seeded sample ERP is the known answer for connector and validation tests, so pin down its promises."""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from connectors.erp.sample_erp import seed as seed_mod
from connectors.erp.sample_erp.schema import account, attachment, company, voucher, voucher_line
from connectors.erp.sample_erp.seed import Defect, SeedSummary, seed_sample_erp, touch_voucher

VOUCHERS = 480


def _rows(db_url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        out = {
            t.name: [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id))]
            for t in (company, account, voucher, voucher_line, attachment)
        }
    engine.dispose()
    return out


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[SeedSummary, dict[str, list[dict[str, Any]]]]:
    root = tmp_path_factory.mktemp("erp")
    summary = seed_sample_erp(f"sqlite:///{root / 'erp.sqlite'}", root / "att", vouchers=VOUCHERS)
    return summary, _rows(summary.db_url)


def _bad_ids(summary: SeedSummary) -> dict[Defect, int]:
    return {b.defect: b.voucher_id for b in summary.bad_vouchers}


def _lines_by_voucher(rows: dict[str, list[dict[str, Any]]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ln in rows["erp_voucher_line"]:
        out[ln["voucher_id"]].append(ln)
    return out


# ------------------------------------------------------------------------------------- file validators


def assert_valid_png(data: bytes) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds, idat = 8, [], b""
    width = height = color = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert pos == len(data)
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert all(k[0:1].islower() for k in kinds if k not in (b"IHDR", b"IDAT", b"IEND", b"PLTE"))
    raw = zlib.decompress(idat)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    stride = 1 + width * channels
    assert len(raw) == height * stride
    assert all(raw[i * stride] <= 4 for i in range(height))  # valid filter type per scanline


def assert_valid_pdf(data: bytes) -> None:
    assert data.startswith(b"%PDF-1.")
    assert data.rstrip(b"\r\n").endswith(b"%%EOF")
    m = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data)
    assert m, "no startxref"
    xref_at = int(m.group(1))
    assert data[xref_at : xref_at + 4] == b"xref"
    head = re.match(rb"xref\r?\n(\d+) (\d+)\r?\n", data[xref_at:])
    assert head and int(head.group(1)) == 0
    count = int(head.group(2))
    table = xref_at + head.end()
    for num in range(count):
        entry = data[table + 20 * num : table + 20 * (num + 1)]
        assert re.fullmatch(rb"\d{10} \d{5} [nf](?: \n|\r\n| \r)", entry), entry
        if entry[17:18] == b"n":
            off = int(entry[:10])
            assert data[off:].startswith(b"%d 0 obj" % num), (
                f"xref entry {num} points at {data[off : off + 12]!r}"
            )
    trailer = data[table + 20 * count :]
    assert trailer.startswith(b"trailer")
    assert re.search(rb"/Size %d\b" % count, trailer) and re.search(rb"/Root \d+ 0 R", trailer)
    for sm in re.finditer(rb"/Length (\d+) >>\nstream\n", data):  # declared stream lengths are right
        end = sm.end() + int(sm.group(1))
        assert data[end : end + len(b"\nendstream")] == b"\nendstream"
    root = int(re.search(rb"/Root (\d+) 0 R", trailer).group(1))  # type: ignore[union-attr]
    assert re.search(rb"%d 0 obj\n<< /Type /Catalog" % root, data)
    assert b"/Type /Page " in data


# ------------------------------------------------------------------------------------- tests


def test_same_seed_same_rows_and_bytes(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> tuple[dict[str, Any], dict[str, str]]:
        s = seed_sample_erp(f"sqlite:///{tmp_path / name}.sqlite", tmp_path / name, vouchers=150, seed=seed)
        files = {
            str(p.relative_to(tmp_path / name)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (tmp_path / name).rglob("*")
            if p.is_file()
        }
        return _rows(s.db_url) | {"bad": s.bad_vouchers}, files

    a, b, c = run("a", 7), run("b", 7), run("c", 8)
    assert a == b
    assert a[0]["erp_voucher"] != c[0]["erp_voucher"]


def test_counts_and_chart_of_accounts(seeded: tuple[SeedSummary, dict]) -> None:
    summary, rows = seeded
    assert summary.normal_vouchers == VOUCHERS and summary.vouchers == VOUCHERS + 6 == len(
        rows["erp_voucher"]
    )
    assert summary.voucher_lines == len(rows["erp_voucher_line"])
    assert summary.attachments == len(rows["erp_attachment"])
    (comp,) = rows["erp_company"]
    assert (comp["code"], comp["fonds_no"], comp["base_currency"]) == ("1001", "J001", "CNY")
    codes = {a["code"]: a for a in rows["erp_account"]}
    for code in (
        "1001",
        "1002.01",
        "1122",
        "1403",
        "1602",
        "2202",
        "2221.01.01",
        "2221.01.05",
        "6001",
        "6602.04",
    ):
        assert code in codes
    assert codes["1602"]["balance_direction"] == "C" and codes["6602"]["category"] == "损益"
    # every used account exists, and is a leaf (no postings to a parent that has sub-accounts)
    parents = {c.rsplit(".", 1)[0] for c in codes if "." in c}
    used = {ln["account_code"] for ln in rows["erp_voucher_line"] if ln["account_code"]}
    assert used <= set(codes) and not used & parents
    assert {v["period"] for v in rows["erp_voucher"]} == set(range(1, 13))
    words = Counter(v["voucher_word"] for v in rows["erp_voucher"])
    assert words.most_common(1)[0][0] == "记" and {"收", "付", "转"} <= set(words)


def test_normal_vouchers_balanced_and_well_formed(seeded: tuple[SeedSummary, dict]) -> None:
    summary, rows = seeded
    bad = set(_bad_ids(summary).values())
    lines = _lines_by_voucher(rows)
    for v in rows["erp_voucher"]:
        if v["id"] in bad:
            continue
        ls = lines[v["id"]]
        assert 2 <= len(ls) <= 6
        assert [ln["line_no"] for ln in ls] == list(range(1, len(ls) + 1))
        debit = sum((ln["debit"] for ln in ls), Decimal(0))
        credit = sum((ln["credit"] for ln in ls), Decimal(0))
        assert debit == credit > 0, v["id"]
        for ln in ls:
            assert ln["debit"] >= 0 and ln["credit"] >= 0 and (ln["debit"] == 0) != (ln["credit"] == 0)
            assert ln["debit"] == ln["debit"].quantize(Decimal("0.01"))
        assert v["summary"] == ls[0]["summary"]
        assert (
            v["status"] == "posted"
            and v["preparer"] != v["reviewer"]
            and v["poster"]
            and v["chief_accountant"]
        )
        d = date.fromisoformat(v["voucher_date"])
        assert (d.year, d.month) == (v["fiscal_year"], v["period"])


def test_auxiliary_dimensions(seeded: tuple[SeedSummary, dict]) -> None:
    _, rows = seeded
    for ln in rows["erp_voucher_line"]:
        code = ln["account_code"] or ""
        if code in ("1122", "6001"):
            assert ln["aux_customer"], ln
        if code in ("2202", "1123"):
            assert ln["aux_supplier"], ln
        if code.startswith("6602"):
            assert ln["aux_department"], ln
        if code in ("6602.02", "6602.03", "6602.04", "1221"):
            assert ln["aux_employee"], ln


def test_voucher_numbers_gap_free_except_injected_duplicate(seeded: tuple[SeedSummary, dict]) -> None:
    summary, rows = seeded
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for v in rows["erp_voucher"]:
        groups[(v["book_code"], v["fiscal_year"], v["period"], v["voucher_word"])].append(v)
    dup_id = _bad_ids(summary)[Defect.DUPLICATE_VOUCHER_NO]
    for vs in groups.values():
        nos = sorted(v["voucher_no"] for v in vs if v["id"] != dup_id)
        assert nos == list(range(1, len(nos) + 1))
    keys = Counter(
        (v["book_code"], v["fiscal_year"], v["period"], v["voucher_word"], v["voucher_no"])
        for v in rows["erp_voucher"]
    )
    dups = [k for k, n in keys.items() if n > 1]
    assert len(dups) == 1 and keys[dups[0]] == 2
    dup = next(v for v in rows["erp_voucher"] if v["id"] == dup_id)
    assert dups[0] == (
        dup["book_code"],
        dup["fiscal_year"],
        dup["period"],
        dup["voucher_word"],
        dup["voucher_no"],
    )


def test_timestamps_within_period_with_ties(seeded: tuple[SeedSummary, dict]) -> None:
    _, rows = seeded
    for v in rows["erp_voucher"]:
        assert v["created_at"] <= v["updated_at"]
        for ts in (v["created_at"], v["updated_at"]):
            assert (ts.year, ts.month) == (v["fiscal_year"], v["period"])
    ties = Counter(v["updated_at"] for v in rows["erp_voucher"])
    assert sum(1 for n in ties.values() if n > 1) >= 5  # cursor tie-breaks get exercised
    assert [v["id"] for v in sorted(rows["erp_voucher"], key=lambda v: (v["created_at"], v["id"]))] == [
        v["id"] for v in rows["erp_voucher"]
    ]


def test_attachments_on_disk_and_valid(seeded: tuple[SeedSummary, dict]) -> None:
    summary, rows = seeded
    missing_id = _bad_ids(summary)[Defect.MISSING_ATTACHMENT_FILE]
    per_voucher = Counter(a["voucher_id"] for a in rows["erp_attachment"])
    for v in rows["erp_voucher"]:
        assert v["attachment_count"] == per_voucher.get(v["id"], 0)
    bad = set(_bad_ids(summary).values())
    normal = [v["id"] for v in rows["erp_voucher"] if v["id"] not in bad]
    reuser = _bad_ids(summary)[Defect.DUPLICATE_INVOICE]
    assert {vid for vid in per_voucher if vid not in (missing_id, reuser)} == set(normal[3::4])  # every 4th
    kinds = Counter()
    for a in rows["erp_attachment"]:
        path = summary.attachment_root / a["storage_path"]
        assert re.fullmatch(r"2025/\d\d/[0-9a-f-]{36}\.(pdf|png)", a["storage_path"])
        if a["voucher_id"] == missing_id:
            assert not path.exists()
            continue
        data = path.read_bytes()
        assert len(data) == a["size"]
        kinds[a["mime_type"]] += 1
        (assert_valid_pdf if a["mime_type"] == "application/pdf" else assert_valid_png)(data)
    assert kinds["application/pdf"] > 10 and kinds["image/png"] > 10


def test_each_defect_present_exactly_once(seeded: tuple[SeedSummary, dict]) -> None:
    summary, rows = seeded
    ids = _bad_ids(summary)
    # INVOICE_OTHER_CARRIER needs 数电票 (einvoices=True, tests/test_einvoice.py)
    assert set(ids) == set(Defect) - {Defect.INVOICE_OTHER_CARRIER}
    assert len(summary.bad_vouchers) == 6 == len(set(ids.values()))
    lines = _lines_by_voucher(rows)
    unbalanced = {
        vid for vid, ls in lines.items() if sum(ln["debit"] for ln in ls) != sum(ln["credit"] for ln in ls)
    }
    assert unbalanced == {ids[Defect.UNBALANCED]}
    assert {ln["voucher_id"] for ln in rows["erp_voucher_line"] if ln["account_code"] is None} == {
        ids[Defect.MISSING_ACCOUNT]
    }
    assert sum(1 for ln in rows["erp_voucher_line"] if ln["account_code"] is None) == 1

    def unparseable(s: str) -> bool:
        try:
            date.fromisoformat(s)
        except ValueError:
            return True
        return False

    by_id = {v["id"]: v for v in rows["erp_voucher"]}
    assert {v["id"] for v in rows["erp_voucher"] if unparseable(v["voucher_date"])} == {
        ids[Defect.INVALID_DATE]
    }
    assert by_id[ids[Defect.INVALID_DATE]]["voucher_date"] == "2025-13-45"
    gone = {
        a["voucher_id"]
        for a in rows["erp_attachment"]
        if not (summary.attachment_root / a["storage_path"]).exists()
    }
    assert gone == {ids[Defect.MISSING_ATTACHMENT_FILE]}
    dup = by_id[ids[Defect.DUPLICATE_VOUCHER_NO]]
    key = ("book_code", "fiscal_year", "period", "voucher_word", "voucher_no")
    twins = [v for v in rows["erp_voucher"] if all(v[k] == dup[k] for k in key)]
    assert len(twins) == 2
    # 发票重复报销: a December voucher carries the very file of the year's first voucher with one.
    paths = Counter(a["storage_path"] for a in rows["erp_attachment"])
    (shared,) = [path for path, n in paths.items() if n > 1]
    holders = sorted(a["voucher_id"] for a in rows["erp_attachment"] if a["storage_path"] == shared)
    assert holders[1] == ids[Defect.DUPLICATE_INVOICE] and by_id[holders[1]]["period"] == 12
    assert holders[0] == min(
        a["voucher_id"] for a in rows["erp_attachment"] if a["voucher_id"] not in ids.values()
    )


def test_without_bad_records_everything_is_clean(tmp_path: Path) -> None:
    s = seed_sample_erp(
        f"sqlite:///{tmp_path / 'e.sqlite'}", tmp_path / "att", vouchers=60, bad_records=False
    )
    rows = _rows(s.db_url)
    assert s.bad_vouchers == [] and len(rows["erp_voucher"]) == 60
    for ls in _lines_by_voucher(rows).values():
        assert sum(ln["debit"] for ln in ls) == sum(ln["credit"] for ln in ls)
        assert all(ln["account_code"] for ln in ls)
    assert all((tmp_path / "att" / a["storage_path"]).is_file() for a in rows["erp_attachment"])


@pytest.mark.parametrize("size", [20_000, 50_000])
def test_attachment_size_padding_keeps_files_valid(tmp_path: Path, size: int) -> None:
    s = seed_sample_erp(
        f"sqlite:///{tmp_path / 'e.sqlite'}",
        tmp_path / "att",
        vouchers=40,
        attachment_every=1,
        attachment_size=size,
    )
    rows = _rows(s.db_url)
    missing = _bad_ids(s)[Defect.MISSING_ATTACHMENT_FILE]
    checked = 0
    for a in rows["erp_attachment"]:
        if a["voucher_id"] == missing:
            continue
        data = (tmp_path / "att" / a["storage_path"]).read_bytes()
        assert abs(len(data) - size) <= size * 0.05
        (assert_valid_pdf if a["mime_type"] == "application/pdf" else assert_valid_png)(data)
        checked += 1
    assert checked == 40 + 1  # and the file the duplicate-invoice voucher carries a second time


def test_touch_voucher_bumps_updated_at(tmp_path: Path) -> None:
    s = seed_sample_erp(f"sqlite:///{tmp_path / 'e.sqlite'}", tmp_path / "att", vouchers=30, fiscal_year=2099)
    before = {v["id"]: v for v in _rows(s.db_url)["erp_voucher"]}
    stamp = touch_voucher(s.db_url, 7, new_summary="更正摘要: 补录发票号")
    after = _rows(s.db_url)
    v = next(v for v in after["erp_voucher"] if v["id"] == 7)
    assert v["summary"] == "更正摘要: 补录发票号" and v["updated_at"] == stamp
    assert stamp > max(b["updated_at"] for b in before.values())  # beyond the cursor even for a future year
    assert (
        next(ln for ln in after["erp_voucher_line"] if ln["voucher_id"] == 7 and ln["line_no"] == 1)[
            "summary"
        ]
        == "更正摘要: 补录发票号"
    )
    with pytest.raises(LookupError):
        touch_voucher(s.db_url, 999_999, new_summary="x")


def test_refuses_to_seed_twice_and_cli_resets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'e.sqlite'}"
    args = ["--db-url", url, "--attachments", str(tmp_path / "att"), "--vouchers", "25", "--no-bad-records"]
    summary = seed_mod.main(args)
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and "25 vouchers" in out and summary.bad_vouchers == []
    with pytest.raises(ValueError, match="already holds vouchers"):
        seed_sample_erp(url, tmp_path / "att", vouchers=25)
    assert seed_mod.main([*args, "--reset", "--attachment-size", "8000"]).vouchers == 25
