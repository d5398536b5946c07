"""Declarative REST voucher source (after dlt's rest_api config): an ERP's query API as a YAML block.

The source file says what to call and how to read the answer; this module does the rest, the same way for
every vendor:

    connection:
      base_url: https://erp.example.com/k3cloud
      vendor: kingdee                 # login, session and error envelope: connectors/erp/<vendor>.py
      auth: {...}                     # the vendor's credentials (secrets from the environment)
      endpoint: {method, path, params, json}   # "{filter}", "{offset}", "{limit}", "{page}", "{columns}"
      filter: {since, keys, always}   # what "{filter}" becomes: from the cursor, for key look-ups, always
      paginator: {type: offset | page_number, page_size, first_page}
      records: {selector, columns}    # where the list is; `columns` names the cells of bare 2-D rows
      incremental: {cursor_field, format}
      voucher: {key, lines: rows | <path>, header}

`lines: rows` is for APIs that answer one row per 分录 (Kingdee's ExecuteBillQuery): rows are grouped into
vouchers by `key`, a voucher cut by a page boundary is completed from the next page, and `header` names
the fields taken from its first row. A path (`body`) is for APIs that nest the lines in the voucher.

Incremental reading is the hub's usual closed boundary: `since` is the cursor's change time minus the
look-back, sent in the vendor's own format and time (ERPs answer in the books' local time without an
offset, and the hub keeps that time as it is, so the cursor never shifts by a time zone). Records come out
in (change time, key) order; the `filter`/order the vendor applies is checked, not trusted: an answer out
of order is a SourceError, since a cursor taken from it could skip vouchers.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.errors import ConfigError, SourceError
from connectors.http import HttpClient
from connectors.stream import Cursor, SourceRecord

SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # keys are put into the vendor's filter string


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Endpoint(_Spec):
    method: Literal["GET", "POST"] = "POST"
    path: str
    params: dict[str, Any] = Field(default_factory=dict)
    body: Any = Field(default=None, alias="json")
    as_text: list[str] = Field(default_factory=list)  # body fields sent as JSON text (Kingdee's "data")


class Filter(_Spec):
    """What "{filter}" becomes, for vendors that take one filter string (Kingdee's FilterString). Vendors
    whose query has fields instead put "{since}" into the endpoint's body or parameters directly."""

    since: str = ""  # e.g. "FMODIFYDATE >= '{since}'"
    keys: str = ""  # e.g. "FVOUCHERID IN ({keys})"; {quoted_keys} gives 'a','b'; empty: look-ups read all
    always: str = ""  # e.g. "FDocumentStatus = 'C'" (已审核 only)
    join: str = " AND "


class Paginator(_Spec):
    """offset / page_number: the vendor's own pages. keyset (one row per 分录, with `filter.since`): each
    request asks again from the change time of the last voucher read, so a voucher edited while the run pages
    (it moves to the end of the order) cannot shift rows past a page boundary unseen, as it can with offsets."""

    type: Literal["offset", "page_number", "keyset"] = "offset"
    page_size: int = Field(default=1000, ge=1, le=100_000)
    first_page: int = 1  # page_number only: where the vendor starts counting


class Records(_Spec):
    selector: str = ""  # dotted path to the list in the answer; empty: the answer is the list
    columns: dict[str, str] | None = None  # name → vendor field key, for bare 2-D rows (in request order)
    total: str = ""  # dotted path to the vendor's count of all matching records (checked on every page)


class Incremental(_Spec):
    cursor_field: str  # dotted path in a record (after `columns`)
    format: str | None = None  # strptime format of the vendor's time; None: ISO 8601
    query_format: str = "%Y-%m-%d %H:%M:%S"  # how `since` is written into the filter
    initial_value: str | None = None  # "{since}" before the first cursor (required when the query needs one)
    # The query asks from this many days before the window: an API that filters by 会计期间 must still see
    # a voucher entered late into an earlier period (结转, 计提, 审计调整 into last year's period 12).
    query_lookback_days: int = Field(default=0, ge=0)
    # False: the vendor cannot order by change time (it filters by 会计期间, say), so the window is read
    # whole and ordered here; True: its order is checked as it streams.
    ordered: bool = True


class VoucherShape(_Spec):
    key: str  # dotted path to the voucher's id
    lines: str = "rows"  # "rows": one row per line, grouped by key; else the dotted path to the lines
    header: list[str] = Field(default_factory=list)  # rows only: fields of the voucher, not of a line


class RestSpec(_Spec):
    base_url: str
    vendor: str
    auth: dict[str, Any] = Field(default_factory=dict)
    endpoint: Endpoint
    filter: Filter = Filter()
    paginator: Paginator = Paginator()
    records: Records = Records()
    incremental: Incremental
    voucher: VoucherShape
    timeout_seconds: float = Field(default=30.0, gt=0)
    attachments: bool = True  # fetch each voucher's 原始凭证 files when the vendor can


class SessionExpired(Exception):
    """The vendor says the session or token is no longer valid: log in again, once."""


class RestVendor(Protocol):
    """What differs per vendor: how to log in, how a call carries the session, how errors are wrapped."""

    def login(self, http: HttpClient) -> None:
        """Open a session (ConfigError naming the auth setting when the vendor refuses the credentials)."""

    def auth(self) -> tuple[dict[str, str], dict[str, str]]:
        """Headers and query parameters that carry the session on each call."""

    def unwrap(self, response: requests.Response, what: str) -> Any:
        """The answer's payload; SessionExpired, TransientSourceError or SourceError from its envelope."""

    def prepare(self, data: dict[str, Any]) -> dict[str, Any]:
        """The record as the mapping reads it (a shape YAML cannot express: a list of pairs as an object)."""

    def attachments(self, stream: RestVoucherStream, records: list[SourceRecord]) -> None:
        """Fill each record's `attachments` with local copies of its files (or do nothing)."""


def load_vendor(source_id: str, spec: RestSpec) -> RestVendor:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.vendor):
        raise ConfigError(source_id, "connection.vendor", f"{spec.vendor!r} is not a vendor module name")
    try:
        module = importlib.import_module(f"connectors.erp.{spec.vendor}")
    except ModuleNotFoundError:
        raise ConfigError(
            source_id, "connection.vendor", f"no connectors/erp/{spec.vendor}.py for vendor {spec.vendor!r}"
        ) from None
    return module.vendor(source_id, spec.auth)


class RestVoucherStream:
    name = "vouchers"
    primary_key = ("id",)

    def __init__(
        self, source_id: str, system: str, spec: RestSpec, vendor: RestVendor, work_dir: Any
    ) -> None:
        self.source_id = source_id
        self.system = system
        self.spec = spec
        self.vendor = vendor
        self.work_dir = work_dir  # where fetched attachments are kept for the archive step
        self.http = HttpClient(source_id, spec.base_url, timeout=spec.timeout_seconds)
        self._logged_in = False

    def __repr__(self) -> str:  # the auth block holds secrets: never shown
        return f"RestVoucherStream({self.source_id}, {self.spec.vendor}, {self.spec.base_url})"

    # -- calls -------------------------------------------------------------------------------------------
    def call(self, endpoint: Endpoint, values: dict[str, Any], what: str) -> Any:
        """One call with the session; a session the vendor calls expired is renewed once."""
        for attempt in (1, 2):
            if not self._logged_in:
                self.vendor.login(self.http)
                self._logged_in = True
            headers, auth_params = self.vendor.auth()
            response = self.http.request(
                endpoint.method,
                endpoint.path,
                params={**_render(endpoint.params, values), **auth_params} or None,
                json=_body(endpoint, values),
                headers=headers,
                accept_status=(401,),
            )
            try:
                return self.vendor.unwrap(response, what)
            except SessionExpired as exc:
                self._logged_in = False
                if attempt == 2:
                    raise SourceError(
                        f"{self.source_id}: {what}: session refused right after login: {exc}"
                    ) from None
        raise AssertionError("unreachable")

    def check(self) -> None:
        list(self._pages(self._query(None, None), limit=1))

    # -- reading -----------------------------------------------------------------------------------------
    def read(
        self, cursor: Cursor | None, *, lookback: dt.timedelta, batch_size: int
    ) -> Iterator[list[SourceRecord]]:
        since = cursor.changed_at - lookback if cursor else None
        batch: list[SourceRecord] = []
        last: tuple[dt.datetime, str] | None = None
        records: Iterator[SourceRecord] | list[SourceRecord] = self._vouchers(since=since)
        if not self.spec.incremental.ordered:
            window = [r for r in records if since is None or r.changed_at >= since]  # type: ignore[operator]
            records = sorted(window, key=lambda r: _order((r.changed_at, r.key)))
        for record in records:
            order = (record.changed_at, record.key)
            if last is not None and _order(order) < _order(last):
                raise SourceError(
                    f"{self.source_id}: the vendor answered out of (change time, key) order at voucher "
                    f"{record.key} after {last[1]}: check the endpoint's order setting"
                )
            last = order  # type: ignore[assignment]
            batch.append(record)
            if len(batch) == batch_size:
                yield self._with_files(batch)
                batch = []
        if batch:
            yield self._with_files(batch)

    def read_keys(self, keys: Sequence[str]) -> list[SourceRecord]:
        bad = [k for k in keys if not SAFE_KEY.match(k)]
        if bad:
            raise SourceError(f"{self.source_id}: {bad[0]!r} is not a voucher key this source can look up")
        if not keys:
            return []
        if self.spec.filter.keys:
            found = list(self._vouchers(keys=list(keys)))
        else:  # the vendor cannot look vouchers up by id: read them all and keep those asked for
            wanted = set(keys)
            found = [r for r in self._vouchers() if r.key in wanted]
        return self._with_files(found) if found else []

    def _with_files(self, records: list[SourceRecord]) -> list[SourceRecord]:
        if self.spec.attachments:
            self.vendor.attachments(self, records)
        return records

    def _query(self, since: dt.datetime | None, keys: list[str] | None) -> dict[str, Any]:
        """The placeholders a query fills: "{since}" (the look-back boundary in the vendor's format, or
        the initial value) and "{filter}" (one filter string, for vendors that take one)."""
        f, inc = self.spec.filter, self.spec.incremental
        asked = since - dt.timedelta(days=inc.query_lookback_days) if since is not None else None
        written = asked.strftime(inc.query_format) if asked is not None else inc.initial_value
        parts = [f.always] if f.always else []
        if since is not None and f.since:
            parts.append(f.since.format(since=written))
        if keys is not None:
            parts.append(f.keys.format(keys=",".join(keys), quoted_keys=",".join(f"'{k}'" for k in keys)))
        return {"since": written, "filter": f.join.join(parts)}

    def _pages(self, query: dict[str, Any], limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Each page's items (rows zipped with the column names), until a short or empty page. With
        `records.total`, the count must stay the same on every page (a record added or removed while the
        run pages shifts the pages: one would be read twice or not at all) and bounds the pages asked for."""
        p = self.spec.paginator
        size = limit or p.page_size
        columns = self.spec.records.columns
        total: Any = None
        number = 0
        while True:
            values = {
                **query,
                "offset": number * size,
                "limit": size,
                "page": p.first_page + number,
                "page_size": size,
                "columns": ",".join(columns.values()) if columns else "",
            }
            what = f"page {number + 1}"
            answer = self.call(self.spec.endpoint, values, what)
            items = _select(answer, self.spec.records.selector, f"{self.source_id}: {what}")
            if len(items) > size:
                raise SourceError(
                    f"{self.source_id}: {what}: {len(items)} records where at most {size} were asked for"
                )
            if self.spec.records.total:
                count = _path(answer, self.spec.records.total)
                if total is not None and count != total:
                    raise SourceError(
                        f"{self.source_id}: {what}: the source now counts {count} records, {total} when the read "
                        "began: records were added or removed while it paged; run again"
                    )
                total = count
            if columns:
                items = [_row(item, list(columns), f"{self.source_id}: {what}") for item in items]
            yield items
            if limit is not None or len(items) < size:
                return
            number += 1
            if isinstance(total, int) and number * size >= total:
                return

    def _vouchers(
        self, *, since: dt.datetime | None = None, keys: list[str] | None = None
    ) -> Iterator[SourceRecord]:
        shape = self.spec.voucher
        query = self._query(since, keys)
        read: set[tuple[str, dt.datetime | None]] = set()

        def once(record: SourceRecord) -> SourceRecord:
            """A voucher twice at one change time in one read: the pages shifted (offsets over a changing
            source) or the vendor ignores the page asked for; its rows would be split or repeated."""
            if (record.key, record.changed_at) in read:
                raise SourceError(
                    f"{self.source_id}: voucher {record.key} came twice in one read: the source changed while "
                    "it was paged, or it ignores the page asked for; run again (keyset paging avoids the first)"
                )
            read.add((record.key, record.changed_at))
            return record

        if shape.lines != "rows":
            for items in self._pages(query):
                for item in items:
                    lines = _path(item, shape.lines)
                    if not isinstance(lines, list):
                        raise SourceError(
                            f"{self.source_id}: voucher lines at {shape.lines!r} are not a list"
                        )
                    yield once(self._record({**item, "lines": lines}))
            return
        if self.spec.paginator.type == "keyset" and keys is None:
            yield from self._keyset_vouchers(since)
            return
        group: list[dict[str, Any]] = []
        for items in self._pages(query):
            for row in items:
                if group and _key(row, shape.key, self.source_id) != _key(
                    group[0], shape.key, self.source_id
                ):
                    yield once(self._grouped(group))
                    group = []
                group.append(row)
        if group:
            yield once(self._grouped(group))

    def _keyset_vouchers(self, since: dt.datetime | None) -> Iterator[SourceRecord]:
        """Rows asked for from a time boundary W (closed, at the filter's precision) and, within it, by
        offset; never more than `page_size` rows a call (Kingdee caps Limit at 2000).

        - After a page, W moves to the change time of the last whole voucher read, when that is later; the
          rows from W on are then asked again from offset 0 and the vouchers already read are dropped (a
          voucher cut by the page boundary is read whole).
        - While W stays (one instant holds more than a page: a batch posting, an import), the next call
          asks from the last row read (offset - 1) and that row must come back first; if it does not, the
          order changed under the read (a voucher of that instant was edited away) and the instant is read
          again from its start, so no row shifts past a boundary unseen. An instant that keeps changing
          fails the read rather than loop.
        """
        fmt = self.spec.incremental.query_format
        size = self.spec.paginator.page_size
        key_of = self.spec.voucher.key
        columns = self.spec.records.columns
        boundary = since
        written = _written(boundary, fmt)
        seen: set[tuple[str, dt.datetime]] = set()
        consumed, last_row, pending = 0, None, []  # rows read from W on, the last of them, the open voucher
        restarts = calls = 0
        while True:
            calls += 1
            values = {
                **self._query(boundary, None),
                "offset": max(consumed - 1, 0),
                "limit": size,
                "page": 1,
                "page_size": size,
                "columns": ",".join(columns.values()) if columns else "",
            }
            what = f"page {calls}"
            answer = self.call(self.spec.endpoint, values, what)
            items = _select(answer, self.spec.records.selector, f"{self.source_id}: {what}")
            if columns:
                items = [_row(item, list(columns), f"{self.source_id}: {what}") for item in items]
            if len(items) > size:
                raise SourceError(
                    f"{self.source_id}: {what}: {len(items)} rows where at most {size} were asked for"
                )
            full = len(items) == size
            if consumed:
                if not items or items[0] != last_row:
                    restarts += 1
                    if restarts > 5:
                        raise SourceError(
                            f"{self.source_id}: rows at {written} keep changing while they are read; run again"
                        )
                    consumed, last_row, pending = 0, None, []
                    continue
                items = items[1:]
            complete: list[list[dict[str, Any]]] = []
            for row in items:
                if pending and _key(row, key_of, self.source_id) != _key(pending[0], key_of, self.source_id):
                    complete.append(pending)
                    pending = []
                pending.append(row)
                consumed, last_row = consumed + 1, row
            if not full and pending:
                complete.append(pending)
                pending = []
            newest = None
            for group in complete:
                record = self._grouped(group)
                if (record.key, record.changed_at) in seen:
                    continue  # read before the boundary moved onto its time
                seen.add((record.key, record.changed_at))
                newest = record.changed_at
                yield record
            if not full:
                return
            moved = _written(newest, fmt) if newest is not None else None
            if moved is not None and (written is None or moved > written):
                boundary, written = newest, moved
                consumed, last_row, pending = 0, None, []
                seen = {k for k in seen if k[1] >= written}  # older ones cannot come back from W on

    def _grouped(self, rows: list[dict[str, Any]]) -> SourceRecord:
        header = {name: rows[0].get(name) for name in self.spec.voucher.header}
        lines = [{k: v for k, v in row.items() if k not in header} for row in rows]
        # `first_line`: the 摘要 and account most ERPs show for the voucher come from its first 分录.
        return self._record({**header, "lines": lines, "first_line": lines[0]})

    def _record(self, data: dict[str, Any]) -> SourceRecord:
        data = self.vendor.prepare(data)
        key = _key(data, self.spec.voucher.key, self.source_id)
        inc = self.spec.incremental
        raw = _path(data, inc.cursor_field)
        if raw is None and data.get("lines"):
            raw = _path(data["lines"][0], inc.cursor_field)
        changed = _time(raw, inc.format)
        if changed is None:
            raise SourceError(
                f"{self.source_id}: voucher {key}: change time {inc.cursor_field!r} is {raw!r}, "
                f"not a time{' in ' + inc.format if inc.format else ''}"
            )
        data.setdefault("attachments", [])
        return SourceRecord(self.name, key, changed, data)


def stream_from_config(config: Any) -> RestVoucherStream:
    from archive_hub.settings import Settings

    try:
        spec = RestSpec.model_validate(config.connection)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("connection", *err["loc"]))
        raise ConfigError(config.id, where, err["msg"]) from None
    if not spec.base_url:
        raise ConfigError(
            config.id, "connection.base_url", "is empty (set the environment variable it names)"
        )
    vendor = load_vendor(config.id, spec)
    work_dir = Settings.from_env().home / "erp" / config.id
    return RestVoucherStream(config.id, config.system, spec, vendor, work_dir)


def json_answer(response: requests.Response, where: str) -> Any:
    """The answer's JSON, or a SourceError naming the call (an HTML error page, a proxy's answer)."""
    try:
        return response.json()
    except ValueError:
        raise SourceError(f"{where}: HTTP {response.status_code} answer is not JSON") from None


# -- helpers -------------------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")


def _render(value: Any, values: dict[str, Any]) -> Any:
    """Fill "{name}" placeholders in a request template; a string that is only a placeholder keeps the
    value's type (StartRow: 0, not "0")."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.match(value)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))), value)
    if isinstance(value, dict):
        return {k: _render(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, values) for v in value]
    return value


def _body(endpoint: Endpoint, values: dict[str, Any]) -> Any:
    if endpoint.body is None:
        return None
    body = _render(endpoint.body, values)
    for name in endpoint.as_text:
        body[name] = json.dumps(body[name], ensure_ascii=False)
    return body


def _path(value: Any, path: str) -> Any:
    for part in path.split(".") if path else ():
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _written(when: dt.datetime | None, fmt: str) -> dt.datetime | None:
    """A time as the vendor's filter sees it: written in `fmt` and read back (seconds, months...)."""
    return dt.datetime.strptime(when.strftime(fmt), fmt) if when is not None else None


def _select(answer: Any, selector: str, where: str) -> list[Any]:
    items = _path(answer, selector)
    parent, _, _ = selector.rpartition(".")
    if items is None and selector and isinstance(_path(answer, parent), dict):
        items = []  # an empty result is often answered without the list, inside the usual envelope
    if not isinstance(items, list):
        raise SourceError(f"{where}: expected a list at {selector or 'the top'}, got {type(items).__name__}")
    return items


def _row(item: Any, names: list[str], where: str) -> dict[str, Any]:
    if not isinstance(item, list) or len(item) != len(names):
        size = len(item) if isinstance(item, list) else type(item).__name__
        raise SourceError(f"{where}: a row has {size} cells where {len(names)} columns were asked for")
    return dict(zip(names, item, strict=True))


def _key(data: dict[str, Any], path: str, source_id: str = "") -> str:
    value = _path(data, path)
    if value is None or value == "":
        raise SourceError(f"{source_id}: a voucher without its key {path!r}: {str(data)[:200]}")
    return str(value)


def _time(raw: Any, fmt: str | None) -> dt.datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = dt.datetime.strptime(raw, fmt) if fmt else dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value


def _order(order: tuple[dt.datetime | None, str]) -> tuple[Any, ...]:
    changed, key = order
    return (changed, (0, int(key), "") if key.isdigit() else (1, 0, key))
