"""The HTTP API of derived data, a WSGI app under ``/api/v1/``.

``GET /api/v1/candles``, ``/book`` and ``/sentiment`` answer the rows of one symbol in a
time range as JSON (or CSV when asked), with cursor pagination; ``/symbols`` lists the
symbols stored per kind; ``/openapi.json`` describes all of it (``app/openapi.py``).
``make_app`` mounts it behind the same authentication and TLS as ``/metrics``.

Without ``from``, a page is the newest ``limit`` rows up to ``to`` (default: now), so a
chart gets the recent candles in one call, and ``next_cursor`` leads to older rows. With
``from``, pages go forward in time and ``next_cursor`` leads to newer rows. Every request
runs in one read transaction whose statements are bounded by ``timeout_seconds``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from market_data_services.app.openapi import (
    API_PREFIX,
    DATA_PARAMETERS,
    DEFAULT_LIMIT,
    FORMATS,
    MAX_LIMIT,
    field_names,
    openapi_document,
)
from market_data_services.market.symbols import is_valid_symbol
from market_data_services.market.timeframes import TIMEFRAMES
from market_data_services.storage.derived import (
    KINDS,
    Kind,
    Row,
    has_symbol,
    read_page,
    read_transaction,
    stored_symbols_by_kind,
    unknown_symbol_message,
)
from market_data_services.timeutil import LATEST_MS, parse_timestamp_ms

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

#: How long each statement of a request may run.
DEFAULT_TIMEOUT_SECONDS = 10.0
#: Every route and its parameters; the OpenAPI document is checked against this.
ROUTES: dict[str, tuple[str, ...]] = {
    **{f"{API_PREFIX}{name}": params for name, params in DATA_PARAMETERS.items()},
    f"{API_PREFIX}symbols": (),
    f"{API_PREFIX}openapi.json": (),
}

_REASONS = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    503: "503 Service Unavailable",
}


class ApiError(Exception):
    """An answer other than 200: status, message, and the parameter at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        parameter: str | None = None,
        valid: Iterable[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.parameter = parameter
        self.valid = list(valid) if valid is not None else None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": str(self)}
        if self.parameter is not None:
            out["parameter"] = self.parameter
        if self.valid is not None:
            out["valid"] = self.valid
        return out


def _bad(parameter: str, message: str, valid: Iterable[str] | None = None) -> ApiError:
    return ApiError(400, f"{parameter}: {message}", parameter=parameter, valid=valid)


@dataclass(frozen=True, kw_only=True)
class Query:
    """A data request's parameters, checked."""

    kind: Kind
    symbol: str
    timeframe: str | None
    start_ms: int | None
    end_ms: int | None
    limit: int
    newest_first: bool
    format: str


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise _bad(name, "given more than once")
    return values[0]


def _time(params: dict[str, list[str]], name: str) -> int | None:
    value = _single(params, name)
    if value is None:
        return None
    try:
        ms = parse_timestamp_ms(value)
    except ValueError as exc:
        raise _bad(name, str(exc)) from None
    if not 0 <= ms <= LATEST_MS:
        raise _bad(name, f"{value!r} is outside 1970-01-01 .. 9999-12-31")
    return ms


def _encode_cursor(direction: str, ts: int) -> str:
    return base64.urlsafe_b64encode(f"{direction}:{ts}".encode()).decode().rstrip("=")


def _decode_cursor(value: str, expected: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        direction, _, ts = raw.partition(":")
        ms = int(ts)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad("cursor", "not a cursor this API gave (pass next_cursor as it is)") from None
    if direction != expected or not 0 <= ms <= LATEST_MS:
        raise _bad(
            "cursor",
            "not a cursor of this query: pass next_cursor with the same from and to",
        )
    return ms


def parse_query(route: str, params: dict[str, list[str]], accept: str) -> Query:
    """The checked parameters of a data route, or ApiError 400 naming the bad one."""
    allowed = DATA_PARAMETERS[route]
    for name in params:
        if name not in allowed:
            raise _bad(name, f"unknown parameter of /api/v1/{route}", valid=allowed)
    symbol = _single(params, "symbol")
    if symbol is None or not symbol:
        raise _bad("symbol", "required, e.g. symbol=EUR/USD")
    timeframe = None
    if route == "candles":
        timeframe = _single(params, "timeframe")
        if timeframe is None:
            raise _bad("timeframe", "required", valid=TIMEFRAMES)
        if timeframe not in TIMEFRAMES:
            raise _bad("timeframe", f"unknown timeframe {timeframe!r}", valid=TIMEFRAMES)
    start, end = _time(params, "from"), _time(params, "to")
    if start is not None and end is not None and start >= end:
        raise _bad("to", "must be later than from")
    limit_text = _single(params, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not limit_text.isascii() or not limit_text.isdigit():
            raise _bad("limit", f"must be a whole number from 1 to {MAX_LIMIT}, got {limit_text!r}")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad("limit", f"must be from 1 to {MAX_LIMIT}, got {limit}")
    newest_first = start is None
    cursor = _single(params, "cursor")
    if cursor is not None:
        if newest_first:
            end = _decode_cursor(cursor, "d")
        else:
            start = _decode_cursor(cursor, "a") + 1
    fmt = _single(params, "format")
    if fmt is None:
        wants_csv = "text/csv" in accept and "application/json" not in accept
        fmt = "csv" if wants_csv else "json"
    elif fmt not in FORMATS:
        raise _bad("format", f"unknown format {fmt!r}", valid=FORMATS)
    return Query(
        kind=KINDS[route],
        symbol=symbol,
        timeframe=timeframe,
        start_ms=start,
        end_ms=end,
        limit=limit,
        newest_first=newest_first,
        format=fmt,
    )


def iso_time(ms: int) -> str:
    """``2026-11-30T04:00:00Z``, with milliseconds only when there are some."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    spec = "seconds" if ms % 1000 == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _record(kind: Kind, row: Row) -> dict[str, Any]:
    ts = int(row[0])
    out: dict[str, Any] = {kind.time_column: ts, "time": iso_time(ts)}
    for name, value in zip(kind.columns, row[1:], strict=True):
        finite = not isinstance(value, float) or math.isfinite(value)
        out[name] = value if finite else None  # JSON has no NaN or infinity
    return out


class Api:
    """The WSGI app; ``engine`` is read through one short transaction per request."""

    def __init__(
        self,
        engine: Engine,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._engine = engine
        self._timeout = timeout_seconds

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        head = environ.get("REQUEST_METHOD") == "HEAD"
        try:
            params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            status, headers, body = self._answer(path, params, environ.get("HTTP_ACCEPT", ""))
        except ApiError as exc:
            status, headers, body = exc.status, [], _json_bytes(exc.body())
            headers.append(("Content-Type", "application/json"))
        except OperationalError as exc:
            logger.warning("api.database_failed", extra={"path": path, "error": str(exc)[:300]})
            message = (
                f"the database did not answer within {self._timeout:g} s, or is unavailable; "
                "ask for a shorter range or retry later"
            )
            status, body = 503, _json_bytes({"error": message})
            headers = [("Content-Type", "application/json"), ("Retry-After", "5")]
        headers += [("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        start_response(_REASONS[status], headers)
        return [] if head else [body]

    def _answer(
        self, path: str, params: dict[str, list[str]], accept: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if path not in ROUTES:
            raise ApiError(404, f"no such API route {path!r}", valid=sorted(ROUTES))
        allowed = ROUTES[path]
        route = path.removeprefix(API_PREFIX)
        if not allowed:
            for name in params:
                raise _bad(name, f"unknown parameter of {path}", valid=())
            if route == "openapi.json":
                return 200, [("Content-Type", "application/json")], _json_bytes(openapi_document())
            with read_transaction(self._engine, timeout_seconds=self._timeout) as connection:
                found = stored_symbols_by_kind(connection)
            return 200, [("Content-Type", "application/json")], _json_bytes(found)
        query = parse_query(route, params, accept)
        rows, next_cursor = self._page(query)
        if query.format == "csv":
            headers = [("Content-Type", "text/csv; charset=utf-8")]
            if next_cursor is not None:
                headers.append(("X-Next-Cursor", next_cursor))
            return 200, headers, _csv_bytes(query.kind, rows)
        document: dict[str, Any] = {"symbol": query.symbol}
        if query.timeframe is not None:
            document["timeframe"] = query.timeframe
        document[query.kind.name] = [_record(query.kind, row) for row in rows]
        document["next_cursor"] = next_cursor
        return 200, [("Content-Type", "application/json")], _json_bytes(document)

    def _page(self, query: Query) -> tuple[list[Row], str | None]:
        """The rows of one page and the cursor of the next (None: this was the last)."""
        if not is_valid_symbol(query.symbol):
            raise ApiError(404, f"unknown symbol {query.symbol!r}", parameter="symbol")
        with read_transaction(self._engine, timeout_seconds=self._timeout) as connection:
            if not has_symbol(connection, query.kind, query.symbol):
                message = unknown_symbol_message(connection, query.kind, query.symbol)
                raise ApiError(404, message, parameter="symbol")
            rows = read_page(
                connection,
                query.kind,
                query.symbol,
                query.timeframe,
                start_ms=query.start_ms,
                end_ms=query.end_ms,
                limit=query.limit + 1,  # one more tells whether another page follows
                newest_first=query.newest_first,
            )
        if len(rows) <= query.limit:
            return rows, None
        if query.newest_first:
            rows = rows[1:]
            return rows, _encode_cursor("d", int(rows[0][0]))
        rows = rows[: query.limit]
        return rows, _encode_cursor("a", int(rows[-1][0]))


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def _csv_bytes(kind: Kind, rows: list[Row]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(field_names(kind))
    for row in rows:
        record = _record(kind, row)
        writer.writerow([_csv_value(v) for v in record.values()])
    return out.getvalue().encode()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def make_api(
    engine: Engine, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> WSGIApplication:
    """The API as a WSGI app, for ``make_app(api=...)``."""
    return Api(engine, timeout_seconds=timeout_seconds)


__all__ = [
    "API_PREFIX",
    "DATA_PARAMETERS",
    "DEFAULT_LIMIT",
    "DEFAULT_TIMEOUT_SECONDS",
    "FORMATS",
    "MAX_LIMIT",
    "ROUTES",
    "Api",
    "ApiError",
    "iso_time",
    "make_api",
    "parse_query",
]
