"""Chinese online-banking exports (网银交易明细): CSV in GBK/GB18030 or UTF-8 with BOM, and XLSX.

Every bank lays its export out differently, so the layout is data, not code: one small YAML file per bank in
``layouts/`` names the encodings to try, the header row that identifies the export, the preamble lines
(账号, 户名, 币种, 期初余额, 期末余额) and which column holds 交易日期, 借方金额/贷方金额 (or one signed
交易金额), 余额, 对方户名, 对方账号, 摘要, 流水号. Adding a bank is adding a YAML file.

Exactness rules: an amount with a decimal comma ("1234,56") is refused, never guessed; thousands separators
("1,234.56") are accepted only in their unambiguous form; XLSX numeric cells are binary doubles, so they are
taken at their shortest round-trip repr and refused if that has more decimals than the currency allows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from canonical_model.bank_statement import (
    Balance,
    BankStatement,
    StatementEntry,
    is_iso_currency,
    minor_units,
)
from connectors.bank import checks
from connectors.bank.errors import StatementEncodingError, StatementFormatError, StatementValueError

LAYOUT_DIR = Path(__file__).with_name("layouts")
HEADER_SCAN_ROWS = 30
_CCY_WORDS = {
    "人民币": "CNY",
    "人民幣": "CNY",
    "RMB": "CNY",
    "美元": "USD",
    "港币": "HKD",
    "港元": "HKD",
    "欧元": "EUR",
    "日元": "JPY",
    "英镑": "GBP",
    "澳元": "AUD",
}
_PLAIN_RE = re.compile(r"[+-]?\d+(\.\d+)?")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_FOOTER_RE = re.compile(r"^\s*(合计|总计|本页合计|小计|借方合计|贷方合计)")


def available_layouts() -> list[str]:
    return sorted(p.stem for p in LAYOUT_DIR.glob("*.yaml"))


def load_layout(name_or_path: str) -> dict[str, Any]:
    """A layout by bank name (``icbc``) or by path to a YAML file."""
    p = Path(name_or_path)
    if not p.suffix:
        p = LAYOUT_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        raise StatementFormatError(
            str(name_or_path), None, f"no such layout; known layouts: {', '.join(available_layouts())}"
        )
    layout = yaml.safe_load(p.read_text(encoding="utf-8"))
    cols = layout.get("columns", {})
    if not layout.get("header_contains") or "booking_date" not in cols:
        raise StatementFormatError(str(p), None, "layout needs header_contains and columns.booking_date")
    if "amount" not in cols and not ("debit" in cols and "credit" in cols):
        raise StatementFormatError(
            str(p), None, "layout needs columns.amount or columns.debit + columns.credit"
        )
    layout.setdefault("name", p.stem)
    return layout


def _is_xlsx(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" and b"xl/" in data[:4096]


def _xlsx_rows(data: bytes, source: str) -> tuple[list[list[Any]], str]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many types for a damaged zip
        raise StatementFormatError(source, None, f"XLSX cannot be opened: {type(e).__name__}: {e}") from None
    ws = wb.worksheets[0]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    wb.close()
    return rows, ws.title


def _find_header(rows: list[list[Any]], layout: dict[str, Any]) -> int | None:
    need = layout["header_contains"]
    for i, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        cells = [str(c).strip() for c in row if c is not None]
        if all(any(c == n or c.startswith(n) for c in cells) for n in need):
            return i
    return None


def _decode_rows(data: bytes, layout: dict[str, Any], source: str) -> tuple[list[list[Any]], int, str]:
    if b"\x00" in data[:4096] or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise StatementEncodingError(
            source, "byte 0", "file is UTF-16 or binary; Chinese bank CSV must be GBK/GB18030 or UTF-8"
        )
    errors = []
    encodings = list(layout.get("encodings", ["gb18030", "utf-8-sig"]))
    if data.startswith(b"\xef\xbb\xbf"):
        encodings = ["utf-8-sig"] + [e for e in encodings if e != "utf-8-sig"]
    for enc in encodings:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError as e:
            errors.append(f"not {enc} (invalid byte at offset {e.start})")
            continue
        rows = [list(r) for r in csv.reader(io.StringIO(text))]
        h = _find_header(rows, layout)
        if h is not None:
            return rows, h, enc
        errors.append(f"as {enc} no header row with {', '.join(layout['header_contains'])}")
    if all(e.startswith("not ") for e in errors):
        raise StatementEncodingError(source, None, "cannot decode: " + "; ".join(errors))
    raise StatementFormatError(
        source,
        f"first {HEADER_SCAN_ROWS} lines",
        f"not a {layout['name']} export (wrong layout or wrong encoding): " + "; ".join(errors),
    )


def sniff(data: bytes) -> bool:
    if _is_xlsx(data):
        return True
    head = data[:8192]
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = head.decode(enc, errors="ignore")
        except LookupError:
            continue
        for name in available_layouts():
            layout = load_layout(name)
            if all(n in text for n in layout["header_contains"]):
                return True
    return False


def _pick_layout(data: bytes, source: str) -> dict[str, Any]:
    for name in available_layouts():
        layout = load_layout(name)
        try:
            if _is_xlsx(data):
                rows, _ = _xlsx_rows(data, source)
                if _find_header(rows, layout) is not None:
                    return layout
            else:
                _decode_rows(data, layout, source)
                return layout
        except (StatementFormatError, StatementEncodingError):
            continue
    raise StatementFormatError(
        source, None, f"no layout matches this export; known layouts: {', '.join(available_layouts())}"
    )


def _cell_str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v).strip().replace("\t", "")


def _amount(v: Any, ccy: str, source: str, where: str, allow_empty: bool = True) -> Decimal | None:
    if isinstance(v, bool):
        raise StatementValueError(source, where, f"amount {v!r} is not a number")
    if isinstance(v, int):
        return Decimal(v)
    s = _cell_str(v).replace("¥", "").replace("￥", "").replace(" ", "")
    if s in ("", "-", "--"):
        if allow_empty:
            return None
        raise StatementValueError(source, where, "amount is empty")
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    elif "," in s:
        raise StatementValueError(
            source, where, f"amount {s!r} uses ',' as decimal separator; expected '.' (e.g. 1234.56)"
        )
    if not _PLAIN_RE.fullmatch(s):
        raise StatementValueError(source, where, f"amount {s!r} is not a decimal number")
    d = Decimal(s)
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and -exp > minor_units(ccy):
        raise StatementValueError(
            source, where, f"amount {s!r} has more decimals than {ccy} allows ({minor_units(ccy)})"
        )
    return d


def _date(
    v: Any, formats: Iterable[str], source: str, where: str
) -> tuple[dt.date | None, dt.datetime | None]:
    if v is None or v == "":
        return None, None
    if isinstance(v, dt.datetime):
        return v.date(), v if v.time() != dt.time() else None
    if isinstance(v, dt.date):
        return v, None
    s = _cell_str(v)
    for f in formats:
        try:
            stamp = dt.datetime.strptime(s, f)
        except ValueError:
            continue
        return stamp.date(), stamp if ("%H" in f) else None
    raise StatementValueError(source, where, f"date {s!r} matches none of {', '.join(formats)}")


def _currency(raw: str, source: str, where: str) -> str:
    code = _CCY_WORDS.get(raw.strip(), raw.strip().upper())
    if not is_iso_currency(code):
        raise StatementValueError(
            source, where, f"currency {raw!r} is not an ISO 4217 code or known 币种 name"
        )
    return code


def parse(data: bytes, *, source: str, layout: str | None = None) -> list[BankStatement]:
    """One statement (the export of one account) from a CSV or XLSX file."""
    lay = load_layout(layout) if layout else _pick_layout(data, source)
    if _is_xlsx(data):
        rows, sheet = _xlsx_rows(data, source)
        h = _find_header(rows, lay)
        if h is None:
            raise StatementFormatError(
                source,
                f"sheet {sheet!r}",
                f"no header row with {', '.join(lay['header_contains'])} in the first {HEADER_SCAN_ROWS} rows",
            )

        def pos(i: int) -> str:
            return f"sheet {sheet!r} row {i + 1}"

        fmt = f"cn-xlsx:{lay['name']}"
    else:
        rows, h, _enc = _decode_rows(data, lay, source)

        def pos(i: int) -> str:
            return f"line {i + 1}"

        fmt = f"cn-csv:{lay['name']}"
    header = [_cell_str(c) for c in rows[h]]
    cols: dict[str, Any] = lay["columns"]

    def col_index(name: str) -> int | None:
        for i, c in enumerate(header):
            if c == name or c.startswith((name + "(", name + "（")):
                return i
        return None

    idx: dict[str, list[int]] = {}
    for key, names in cols.items():
        found = [i for n in ([names] if isinstance(names, str) else names) if (i := col_index(n)) is not None]
        if found:
            idx[key] = found
    for required in ("booking_date", *(("amount",) if "amount" in cols else ("debit", "credit"))):
        if required not in idx:
            raise StatementFormatError(
                source, pos(h), f"header has no column {cols[required]!r} required by layout {lay['name']}"
            )
    preamble = "\n".join(",".join(_cell_str(c) for c in r if _cell_str(c)) for r in rows[:h])
    pre: dict[str, str] = {}
    for key, rx in (lay.get("preamble") or {}).items():
        m = re.search(rx, preamble)
        if m:
            pre[key] = m.group(1).strip()
    currency = _currency(pre["currency"], source, "preamble 币种") if "currency" in pre else None
    currency = currency or lay.get("currency_default", "CNY")
    formats = lay.get("date_formats", ["%Y-%m-%d"])

    def get(row: list[Any], key: str) -> Any:
        vals = [row[i] for i in idx.get(key, []) if i < len(row) and _cell_str(row[i])]
        if not vals:
            return None
        if len(vals) == 1:
            return vals[0]
        return " ".join(_cell_str(v) for v in vals)

    entries: list[StatementEntry] = []
    for i in range(h + 1, len(rows)):
        row = rows[i]
        if not any(_cell_str(c) for c in row):
            continue
        if _FOOTER_RE.match(_cell_str(row[0]) if row else ""):
            break
        where = pos(i)
        if len(row) < len(header) and not _is_xlsx(data):
            raise StatementFormatError(
                source, where, f"row has {len(row)} columns but the header has {len(header)} (truncated?)"
            )
        ccy = _currency(_cell_str(get(row, "currency")), source, where) if get(row, "currency") else currency
        if "amount" in idx:
            amount = _amount(get(row, "amount"), ccy, source, where + f" column {cols['amount']}", False)
        else:
            debit = _amount(get(row, "debit"), ccy, source, where + f" column {cols['debit']}")
            credit = _amount(get(row, "credit"), ccy, source, where + f" column {cols['credit']}")
            if debit and credit:
                raise StatementValueError(source, where, f"row has both 借方 {debit} and 贷方 {credit}")
            if debit is None and credit is None:
                raise StatementValueError(source, where, "row has neither a 借方 nor a 贷方 amount")
            amount = (credit or Decimal(0)) - (debit or Decimal(0))
        assert amount is not None
        bdate, btime = _date(get(row, "booking_date"), formats, source, where + " booking date")
        if bdate is None:
            raise StatementValueError(source, where, f"empty {cols['booking_date']}")
        if "booking_time" in idx and btime is None:
            t = _cell_str(get(row, "booking_time"))
            if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", t):
                parts = [int(x) for x in t.split(":")]
                btime = dt.datetime.combine(bdate, dt.time(*parts))
        vdate, _ = _date(get(row, "value_date"), formats, source, where + " value date")
        bal = get(row, "balance")
        entries.append(
            StatementEntry(
                amount=amount,
                currency=ccy,
                booking_date=bdate,
                value_date=vdate or bdate,
                booking_time=btime,
                bank_reference=_cell_str(get(row, "bank_reference")) or None,
                counterparty_name=_cell_str(get(row, "counterparty_name")) or None,
                counterparty_account=_cell_str(get(row, "counterparty_account")) or None,
                counterparty_bank=_cell_str(get(row, "counterparty_bank")) or None,
                remittance=_cell_str(get(row, "remittance")) or None,
                transaction_type=_cell_str(get(row, "transaction_type")) or None,
                balance_after=_amount(bal, ccy, source, where + " 余额") if bal is not None else None,
                source=source,
                position=where,
            )
        )
    account = pre.get("account", "").replace(" ", "")
    if not account:
        raise StatementFormatError(
            source, "preamble", f"no account number (账号) in the lines above {pos(h)}"
        )
    balances = []
    opening = closing = None
    for key, kind in (("opening_balance", "opening"), ("closing_balance", "closing")):
        if key in pre:
            b = Balance(
                type=kind,  # type: ignore[arg-type]
                amount=_amount(pre[key], currency, source, f"preamble {key}", False),  # type: ignore[arg-type]
                currency=currency,
                date=(entries[0].booking_date if kind == "opening" else entries[-1].booking_date)
                if entries
                else None,
                code=key,
            )
            balances.append(b)
            opening, closing = (b, closing) if kind == "opening" else (opening, b)
    stmt = BankStatement(
        format=fmt,
        source=source,
        position=pos(h),
        account=account,
        currency=currency,
        account_owner=pre.get("account_owner"),
        account_bank=lay.get("bank"),
        opening_balance=opening,
        closing_balance=closing,
        balances=balances,
        entries=entries,
    )
    stmt.balance_check = checks.balance_check(stmt)
    return [stmt]
