"""The HTTP API of derived data on a live server: real cheroot on a free port, real
SQLite and PostgreSQL filled by the real candle service, real HTTP clients."""

from __future__ import annotations

import base64
import csv
import io
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from market_data_services.app.api import ROUTES, make_api
from market_data_services.app.auth import BasicAuth
from market_data_services.app.openapi import MAX_LIMIT
from market_data_services.app.server import HttpServer, make_app
from market_data_services.market.timeframes import MINUTE_MS, TIMEFRAMES
from market_data_services.storage import Timeouts, create_engine, upgrade
from tests.databases import DatabaseFactory, backend_params
from tests.derived_data import BOOK_ROWS, NOW_S, SENTIMENT_ROWS, T0, TICK_COUNT, fill, ticks


@dataclass(frozen=True)
class Served:
    url: str
    engine: Engine


def start_server(engine: Engine, auth: BasicAuth | None = None, now_s: float = NOW_S) -> HttpServer:
    """A server of the API whose wall clock says ``now_s`` (that of the filled data)."""
    app = make_app(
        registry=CollectorRegistry(),
        health=lambda: (200, {}),
        ready=lambda: (True, {}),
        auth=auth,
        api=make_api(engine, clock=lambda: now_s),
    )
    server = HttpServer(app)
    server.start()
    return server


@pytest.fixture(scope="module", params=backend_params())
def served(request: pytest.FixtureRequest, database_factory: DatabaseFactory) -> Iterator[Served]:
    """One filled database per backend for the whole module, and a server on it."""
    url = database_factory.url(request.param)
    engine = create_engine(url)
    upgrade(engine)
    fill(engine)
    server = start_server(engine)
    yield Served(server.url, engine)
    server.stop()
    engine.dispose()
    database_factory.drop(url)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(served: Served, path: str) -> tuple[int, Any]:
    status, _, body = get(served.url + path)
    return status, json.loads(body)


def expected_minutes() -> list[dict[str, Any]]:
    """One-minute candles of the test ticks, by hand: (bid + ask) / 2 per tick."""
    by_minute: dict[int, list[float]] = {}
    for tick in ticks():
        by_minute.setdefault(tick.ts - tick.ts % MINUTE_MS, []).append(tick.mid)
    return [
        {
            "ts_open": start,
            "open": mids[0],
            "high": max(mids),
            "low": min(mids),
            "close": mids[-1],
            "volume": float(len(mids)),
            "tick_count": len(mids),
        }
        for start, mids in sorted(by_minute.items())
    ]


def test_latest_candles_end_with_the_open_minute_marked_incomplete(served: Served) -> None:
    status, page = get_json(served, "/api/v1/candles?symbol=EUR/USD&timeframe=1m")
    assert status == 200
    assert page["symbol"] == "EUR/USD" and page["timeframe"] == "1m"
    assert page["next_cursor"] is None
    candles = page["candles"]
    assert [c["complete"] for c in candles] == [True] * 10 + [False]
    assert [{k: c[k] for k in expected_minutes()[0]} for c in candles] == expected_minutes()
    assert candles[0]["time"] == "2026-11-30T04:00:00Z"
    assert candles[-1]["time"] == "2026-11-30T04:10:00Z"


def test_the_open_hour_is_rolled_up_from_every_tick_so_far(served: Served) -> None:
    status, page = get_json(served, "/api/v1/candles?symbol=EUR/USD&timeframe=1h")
    assert status == 200
    mids = [t.mid for t in ticks()]
    assert page["candles"] == [
        {
            "ts_open": T0,
            "time": "2026-11-30T04:00:00Z",
            "open": mids[0],
            "high": max(mids),
            "low": min(mids),
            "close": mids[-1],
            "volume": float(TICK_COUNT),
            "tick_count": TICK_COUNT,
            "complete": False,
        }
    ]


def test_without_a_start_the_newest_page_ends_now_not_at_rows_stamped_later(
    served: Served,
) -> None:
    server = start_server(served.engine, now_s=(T0 + 5 * MINUTE_MS + 30_000) / 1000)
    try:
        path = "/api/v1/candles?symbol=EUR/USD&timeframe=1m"
        _, page = get_json(Served(server.url, served.engine), path + "&limit=2")
        assert [c["time"] for c in page["candles"]] == [
            "2026-11-30T04:04:00Z",
            "2026-11-30T04:05:00Z",
        ]
        _, later = get_json(Served(server.url, served.engine), path + f"&from={T0}&limit=20")
        assert len(later["candles"]) == 11  # with from, to has no default
    finally:
        server.stop()


def test_pages_forward_from_a_start_join_to_the_whole_range(served: Served) -> None:
    path = f"/api/v1/candles?symbol=EUR/USD&timeframe=1m&from={T0}&limit=4"
    pages, cursor = [], None
    while True:
        status, page = get_json(served, path + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200
        pages.append([c["ts_open"] for c in page["candles"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 3]
    assert [ts for page in pages for ts in page] == [T0 + i * MINUTE_MS for i in range(11)]


def test_pages_without_a_start_go_back_in_time(served: Served) -> None:
    status, first = get_json(served, "/api/v1/candles?symbol=EUR/USD&timeframe=1m&limit=4")
    assert status == 200
    assert [c["ts_open"] for c in first["candles"]] == [T0 + i * MINUTE_MS for i in range(7, 11)]
    cursor = first["next_cursor"]
    status, second = get_json(
        served, f"/api/v1/candles?symbol=EUR/USD&timeframe=1m&limit=4&cursor={cursor}"
    )
    assert [c["ts_open"] for c in second["candles"]] == [T0 + i * MINUTE_MS for i in range(3, 7)]


def test_from_and_to_accept_iso_and_epoch_ms_and_to_is_exclusive(served: Served) -> None:
    iso = (
        "/api/v1/candles?symbol=EUR/USD&timeframe=5m&from=2026-11-30T04:00:00Z&to=2026-11-30T04:10"
    )
    ms = f"/api/v1/candles?symbol=EUR/USD&timeframe=5m&from={T0}&to={T0 + 10 * MINUTE_MS}"
    _, by_iso = get_json(served, iso)
    _, by_ms = get_json(served, ms)
    assert by_iso == by_ms
    assert [c["time"] for c in by_iso["candles"]] == [
        "2026-11-30T04:00:00Z",
        "2026-11-30T04:05:00Z",
    ]


def test_csv_by_format_or_accept_has_the_json_fields(served: Served) -> None:
    _, page = get_json(served, "/api/v1/candles?symbol=EUR/USD&timeframe=5m")
    for path, headers in (
        ("/api/v1/candles?symbol=EUR/USD&timeframe=5m&format=csv", {}),
        ("/api/v1/candles?symbol=EUR/USD&timeframe=5m", {"Accept": "text/csv"}),
    ):
        status, response_headers, body = get(served.url + path, headers)
        assert status == 200
        assert response_headers["Content-Type"] == "text/csv; charset=utf-8"
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        assert [r["time"] for r in rows] == [c["time"] for c in page["candles"]]
        assert [float(r["close"]) for r in rows] == [c["close"] for c in page["candles"]]
        assert [r["complete"] for r in rows] == ["true", "true", "false"]


def test_csv_pages_carry_the_next_cursor_in_a_header(served: Served) -> None:
    status, headers, _ = get(
        served.url + "/api/v1/candles?symbol=EUR/USD&timeframe=1m&limit=2&format=csv"
    )
    assert status == 200
    assert base64.urlsafe_b64decode(headers["X-Next-Cursor"] + "==").startswith(b"d:")


def test_book_and_sentiment_rows_keep_millisecond_times(served: Served) -> None:
    status, book = get_json(served, "/api/v1/book?symbol=EUR/USD")
    assert status == 200
    assert len(book["book"]) == BOOK_ROWS
    assert book["book"][1]["time"] == "2026-11-30T04:00:01.250Z"
    assert book["book"][1]["ofi"] == 1.0
    assert set(book["book"][0]) >= {"ts", "best_bid", "spread_bps", "imbalance_5", "microprice"}
    status, sentiment = get_json(served, "/api/v1/sentiment?symbol=EUR/USD&limit=2")
    assert status == 200
    # The newest two readings (03:00 and 04:00), oldest first, and a cursor to older ones.
    assert [r["time"] for r in sentiment["sentiment"]] == [
        "2026-11-30T03:00:00.000Z",
        "2026-11-30T04:00:00.000Z",
    ]
    assert [r["signal"] for r in sentiment["sentiment"]] == [-1, 0]
    cursor = sentiment["next_cursor"]
    _, older = get_json(served, f"/api/v1/sentiment?symbol=EUR/USD&limit=10&cursor={cursor}")
    assert len(older["sentiment"]) == SENTIMENT_ROWS - 2


def test_symbols_lists_each_kind(served: Served) -> None:
    assert get_json(served, "/api/v1/symbols") == (
        200,
        {"candles": ["EUR/USD"], "book": ["EUR/USD"], "sentiment": ["EUR/USD"]},
    )


@pytest.mark.parametrize(
    ("query", "parameter", "valid"),
    [
        ("symbol=EUR/USD&timeframe=2m", "timeframe", list(TIMEFRAMES)),
        ("symbol=EUR/USD", "timeframe", list(TIMEFRAMES)),
        ("timeframe=1m", "symbol", None),
        ("symbol=EUR/USD&timeframe=1m&limit=0", "limit", None),
        (f"symbol=EUR/USD&timeframe=1m&limit={MAX_LIMIT + 1}", "limit", None),
        ("symbol=EUR/USD&timeframe=1m&limit=ten", "limit", None),
        ("symbol=EUR/USD&timeframe=1m&from=yesterday", "from", None),
        ("symbol=EUR/USD&timeframe=1m&from=2026-11-30&to=2026-11-29", "to", None),
        ("symbol=EUR/USD&timeframe=1m&cursor=bm9wZQ", "cursor", None),
        ("symbol=EUR/USD&timeframe=1m&format=xml", "format", ["json", "csv"]),
        ("symbol=EUR/USD&timeframe=1m&colour=red", "colour", None),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it_and_the_valid_choices(
    served: Served, query: str, parameter: str, valid: list[str] | None
) -> None:
    status, body = get_json(served, f"/api/v1/candles?{query}")
    assert status == 400
    assert body["parameter"] == parameter
    assert body["error"].startswith(f"{parameter}: ")
    if valid is not None:
        assert body["valid"] == valid


def test_an_unknown_symbol_is_a_404_listing_the_stored_ones(served: Served) -> None:
    status, body = get_json(served, "/api/v1/candles?symbol=USD/JPY&timeframe=1m")
    assert status == 404
    assert "USD/JPY" in body["error"] and "EUR/USD" in body["error"]
    status, _ = get_json(served, "/api/v1/book?symbol=%00")
    assert status == 404


def test_an_unknown_route_under_the_api_is_a_404(served: Served) -> None:
    status, _ = get_json(served, "/api/v1/ticks")
    assert status == 404


def test_head_answers_the_headers_of_get_without_a_body(served: Served) -> None:
    path = served.url + "/api/v1/candles?symbol=EUR/USD&timeframe=1m"
    request = urllib.request.Request(path, method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.read() == b""
        length = int(response.headers["Content-Length"])
    assert length == len(get(path)[2])


def test_the_api_asks_for_the_same_credentials_as_metrics(engine: Engine) -> None:
    fill(engine)
    server = start_server(engine, BasicAuth("quant", password="s3cret-enough"))
    try:
        path = server.url + "/api/v1/candles?symbol=EUR/USD&timeframe=1m"
        assert get(path)[0] == 401
        assert get(server.url + "/metrics")[0] == 401
        token = base64.b64encode(b"quant:s3cret-enough").decode()
        assert get(path, {"Authorization": f"Basic {token}"})[0] == 200
    finally:
        server.stop()


def test_an_unreachable_database_is_a_503_saying_so_not_a_traceback() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/none", timeouts=Timeouts(connect_seconds=2)
    )
    server = start_server(engine)
    try:
        status, headers, body = get(server.url + "/api/v1/candles?symbol=EUR/USD&timeframe=1m")
        assert status == 503
        assert headers["Retry-After"] == "5"
        assert "did not answer" in json.loads(body)["error"]
    finally:
        server.stop()
        engine.dispose()


def test_openapi_describes_every_route_and_parameter_of_the_code(served: Served) -> None:
    status, document = get_json(served, "/api/v1/openapi.json")
    assert status == 200
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == set(ROUTES)
    for path, parameters in ROUTES.items():
        documented = [p["name"] for p in document["paths"][path]["get"].get("parameters", [])]
        assert documented == list(parameters), path


def test_a_request_finding_the_apis_pool_busy_is_a_503_not_a_wait_without_end(
    database_factory: DatabaseFactory,
) -> None:
    url = database_factory.url("sqlite")
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    upgrade(engine)
    fill(engine)
    server = start_server(engine)
    try:
        with engine.connect():  # the pool's only connection, taken
            status, _, body = get(server.url + "/api/v1/candles?symbol=EUR/USD&timeframe=1m")
        assert status == 503
        assert "error" in json.loads(body)
        assert get(server.url + "/api/v1/candles?symbol=EUR/USD&timeframe=1m")[0] == 200
    finally:
        server.stop()
        engine.dispose()
        database_factory.drop(url)
