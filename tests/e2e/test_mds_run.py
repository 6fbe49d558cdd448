"""``mds run`` as a user starts it: a real process, a real SQLite file, real HTTP."""

from __future__ import annotations

import contextlib
import http.server
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from market_data_services.ingest import Tick, write_ticks
from market_data_services.storage import create_engine, upgrade
from tests.e2e.mds_process import MdsProcess, wait_until

#: DESIGN.md's metric contract: family name -> type.
CONTRACT = {
    "mds_service_iterations": "counter",
    "mds_service_errors": "counter",
    "mds_service_iterations_skipped": "counter",
    "mds_service_iteration_duration_seconds": "histogram",
    "mds_service_circuit_breaker_state": "gauge",
    "mds_service_circuit_breaker_transitions": "counter",
    "mds_service_running": "gauge",
    "mds_service_last_success_timestamp_seconds": "gauge",
    "mds_service_interval_seconds": "gauge",
}

#: Short intervals and an eager breaker, all through flags (nothing is edited for tests).
FAST = [
    "--demo",
    "--speed",
    "30",
    "--set",
    "services.demo_feed.interval_seconds=0.2",
    "--set",
    "services.demo_feed.circuit_breaker.failure_threshold=2",
    "--set",
    "services.demo_feed.circuit_breaker.timeout_seconds=0.5",
    "--set",
    "services.candles.interval_seconds=0.5",
    "--set",
    "services.candles.circuit_breaker.failure_threshold=2",
    "--set",
    "services.candles.circuit_breaker.timeout_seconds=0.5",
    "--set",
    "health.error_rate_window_seconds=2",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def start(workdir: Path, *args: str, env: dict[str, str] | None = None) -> MdsProcess:
    return MdsProcess(list(args), cwd=workdir, env=env)


@pytest.fixture
def mds(workdir: Path) -> Iterator[MdsProcess]:
    process = start(workdir, *FAST)
    yield process
    process.close()


def scrape(process: MdsProcess) -> dict[str, object]:
    status, body = process.get("/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body)}


def test_every_contract_metric_is_scraped_for_every_service(mds: MdsProcess) -> None:
    services = set(json.loads(mds.get("/api/health/aggregators")[1])["services"])
    assert "DemoFeedService" in services
    wait_until(
        lambda: all(s["iterations"] > 0 for s in mds.health()[1]["services"].values()),
        30,
        "every service iterated",
    )
    families = scrape(mds)
    for name, kind in CONTRACT.items():
        family = families.get(name)
        assert family is not None, f"{name} missing from /metrics"
        assert family.type == kind, name
        labelled = {sample.labels.get("service") for sample in family.samples}
        assert services <= labelled, f"{name} lacks {services - labelled}"


def test_sigterm_stops_cleanly_with_exit_0(mds: MdsProcess) -> None:
    wait_until(lambda: mds.health()[1]["services"]["DemoFeedService"]["iterations"] > 2, 30, "")
    mds.signal(signal.SIGTERM)
    assert mds.wait(timeout=5.0 + 10.0) == 0  # the feed's stop timeout, plus start-up slack
    events = [record["event"] for record in mds.logs]
    assert "mds.stopping" in events
    assert events[-1] == "mds.stopped"
    assert not [r for r in mds.logs if r["event"] == "mds.services_did_not_stop"]


def test_sigint_stops_cleanly_too(mds: MdsProcess) -> None:
    mds.signal(signal.SIGINT)
    assert mds.wait(timeout=15.0) == 0


def test_spans_are_flushed_at_shutdown(workdir: Path) -> None:
    process = start(workdir, *FAST, "--trace-console")
    try:
        wait_until(
            lambda: process.health()[1]["services"]["DemoFeedService"]["iterations"] > 0, 30, ""
        )
        process.signal(signal.SIGTERM)
        assert process.wait(timeout=15.0) == 0
    finally:
        process.close()
    spans = "".join(process.stdout)
    assert '"name": "DemoFeedService.iteration"' in spans


def test_second_signal_exits_at_once_with_128_plus_signal(workdir: Path) -> None:
    # A lock held elsewhere with a long busy timeout keeps the feed's iteration in flight,
    # so the clean shutdown would wait up to its stop timeout.
    process = start(
        workdir,
        *FAST,
        "--set",
        "database.busy_timeout_seconds=60",
        "--set",
        "services.demo_feed.stop_timeout_seconds=60",
    )
    holder = sqlite3.connect(workdir / "mds.sqlite", timeout=5, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        wait_until(
            lambda: (
                process.health()[1]["services"]["DemoFeedService"]["current_iteration_seconds"]
                > 0.5
            ),
            30,
            "the feed's iteration waits on the lock",
        )
        process.signal(signal.SIGTERM)
        process.wait_for_log("mds.stopping", 10)
        process.signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        holder.rollback()
        holder.close()
        process.close()


@contextlib.contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Hold the database's write lock from another connection, as a stuck job would.

    We run as root, so file permissions would not stop writes; a lock does, on both
    databases. The service's own lock wait (``database.busy_timeout_seconds``: SQLite's
    busy timeout, PostgreSQL's lock_timeout) is short, so its writes fail quickly.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        holder = sqlite3.connect(parsed.database or "", timeout=5, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as connection:
        connection.execute("LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.rollback()


def test_health_turns_503_while_the_database_is_locked_and_200_after(
    workdir: Path, database_url: str
) -> None:
    process = start(
        workdir,
        *FAST,
        "--db",
        database_url,
        "--set",
        "database.migrate=always",
        "--set",
        "database.busy_timeout_seconds=0.1",
    )
    try:
        wait_until(lambda: process.health()[0] == 200, 30, "healthy at start")
        with write_lock(database_url):
            # The feed writes on every iteration, so it must fail while the lock is held.
            # (The candle service may too, but an iteration with nothing new to write can
            # succeed under a write lock, so its state is not asserted here.)
            wait_until(
                lambda: (
                    process.health()[1]["services"]["DemoFeedService"]["circuit_breaker"] == "open"
                ),
                30,
                "the feed's breaker opens",
            )
            status, report = process.health()
            assert status == 503, report
            assert report["overall_status"] == "degraded"
            feed = report["services"]["DemoFeedService"]
            assert feed["status"] == "degraded", feed
            assert feed["errors"] >= 2, feed
            assert "lock" in feed["last_error"]["error"], feed
            families = scrape(process)
            states = {
                s.labels["service"]: s.value
                for s in families["mds_service_circuit_breaker_state"].samples
            }
            assert states["DemoFeedService"] in (1.0, 2.0)  # open, or already trying again
            ready, body = process.get("/readyz")
            assert ready == 200, body  # alive and reachable: nothing to restart
        wait_until(lambda: process.health()[0] == 200, 30, "healthy again after the lock")
        assert process.proc.poll() is None  # the same process, no restart
        for entry in process.health()[1]["services"].values():
            assert entry["circuit_breaker"] == "closed", entry
    finally:
        process.close()


def test_config_error_exits_2_naming_the_key(workdir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "market_data_services",
            "run",
            "--set",
            "services.demo_feed.interval_seconds=-1",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "services.demo_feed.interval_seconds: must be > 0, got -1" in result.stderr
    assert not (workdir / "mds.sqlite").exists()  # nothing was started


def test_address_in_use_exits_1(workdir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "market_data_services", "run", "--listen", f"127.0.0.1:{port}"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"http.listen: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_symbol_change_in_the_config_file_applies_within_the_ttl(workdir: Path) -> None:
    config = workdir / "mds.toml"
    config.write_text('symbols = ["EUR/USD"]\nsymbol_cache_ttl_seconds = 0.5\n')
    process = start(workdir, *FAST, "--config", str(config))
    try:
        assert process.health()[1]["services"]["DemoFeedService"]["symbols"] == ["EUR/USD"]
        config.write_text('symbols = ["EUR/USD", "NZD/USD"]\nsymbol_cache_ttl_seconds = 0.5\n')
        wait_until(
            lambda: (
                process.health()[1]["services"]["DemoFeedService"]["symbols"]
                == ["EUR/USD", "NZD/USD"]
            ),
            15,
            "the new symbol list is used",
        )
        # A broken edit keeps the last good list; the service goes on.
        config.write_text("symbols = [\n")
        wait_until(
            lambda: any(r["event"] == "symbols.refresh_failed" for r in process.logs),
            15,
            "the failed refresh is logged",
        )
        assert process.health()[1]["services"]["DemoFeedService"]["symbols"] == [
            "EUR/USD",
            "NZD/USD",
        ]
        assert process.proc.poll() is None
    finally:
        process.close()


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps the decoded export requests."""

    received: ClassVar[list[ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(ExportTraceServiceResponse().SerializeToString())

    def log_message(self, *args: object) -> None:
        return None


def test_spans_go_to_the_otlp_endpoint_from_the_environment(workdir: Path) -> None:
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    process = start(
        workdir,
        *FAST,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "mds-e2e"},
    )
    try:
        wait_until(
            lambda: process.health()[1]["services"]["DemoFeedService"]["iterations"] > 1, 30, ""
        )
        process.signal(signal.SIGTERM)
        assert process.wait(timeout=15.0) == 0
    finally:
        process.close()
        receiver.shutdown()
        thread.join(5)
    names = set()
    services = set()
    for request in _Collector.received:
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope in resource_spans.scope_spans:
                names.update(span.name for span in scope.spans)
    assert "DemoFeedService.iteration" in names
    assert "DemoFeedService.symbol" in names
    assert services == {"mds-e2e"}


def test_demo_with_default_settings_has_candles_and_market_metrics_within_a_minute(
    workdir: Path,
) -> None:
    process = start(workdir, "--demo")
    try:

        def one_minute_candles() -> dict[str, float]:
            family = scrape(process)["mds_candles_written"]
            return {
                s.labels["timeframe"]: s.value for s in family.samples if s.name.endswith("_total")
            }

        def symbols_with_three_minutes() -> set[str]:
            with sqlite3.connect(workdir / "mds.sqlite") as db:
                rows = db.execute(
                    "SELECT symbol, COUNT(*) FROM candles WHERE timeframe = '1m' GROUP BY symbol"
                ).fetchall()
            return {symbol for symbol, count in rows if count >= 3}

        wait_until(lambda: one_minute_candles().get("1m", 0) > 0, 60, "1m candles written")
        # The first pass works the symbols one after the other: wait for the last one too.
        wait_until(
            lambda: symbols_with_three_minutes() == {"EUR/USD", "NZD/USD"},
            30,
            "three 1m candles of each demo pair",
        )
        families = scrape(process)
        freshness = {s.labels["symbol"] for s in families["mds_data_freshness_seconds"].samples}
        assert freshness == {"EUR/USD", "NZD/USD"}
        ticks = families["mds_ticks_written"].samples
        assert next(s.value for s in ticks if s.name.endswith("_total")) > 0
        crossed = families["mds_ticks_crossed"].samples  # FXCM's crossed quotes are kept
        assert next(s.value for s in crossed if s.name.endswith("_total")) > 0
    finally:
        process.close()


def test_demo_has_book_and_sentiment_metrics_within_a_minute(workdir: Path) -> None:
    process = start(workdir, "--demo")
    try:

        def gauge(name: str, symbol: str) -> float | None:
            family = scrape(process).get(name)
            samples = [] if family is None else family.samples  # type: ignore[attr-defined]
            return next((s.value for s in samples if s.labels.get("symbol") == symbol), None)

        wait_until(lambda: gauge("mds_dom_spread", "XRPUSDT") is not None, 60, "book metrics")
        wait_until(
            lambda: gauge("mds_sentiment_long_share_ratio", "EUR/USD") is not None,
            60,
            "sentiment metrics",
        )
        assert gauge("mds_dom_spread", "XRPUSDT") > 0  # type: ignore[operator]
        assert gauge("mds_sentiment_long_share_ratio", "EUR/USD") == 0.39  # IG: 39 % long
        assert gauge("mds_sentiment_signal", "NZD/USD") == 0  # 38 %: neither threshold
        with sqlite3.connect(workdir / "mds.sqlite") as db:
            books = db.execute("SELECT COUNT(*) FROM dom_metrics").fetchone()[0]
            readings = db.execute("SELECT COUNT(DISTINCT symbol) FROM sentiment_metrics").fetchone()
        assert books > 100
        assert readings[0] == 2
        status, report = process.health()
        assert status == 200, report
        for name in ("DOMAggregatorService", "SentimentAggregatorService"):
            assert report["services"][name]["status"] == "healthy"
    finally:
        process.close()


def test_without_demo_an_empty_database_runs_healthy_and_warns_of_no_symbols(
    workdir: Path,
) -> None:
    process = start(workdir)
    try:
        status, report = process.health()
        assert status == 200, report
        assert list(report["services"]) == [
            "AggregatorService",
            "DOMAggregatorService",
            "SentimentAggregatorService",
        ]
        warning = process.wait_for_log("mds.no_symbols", 10)
        assert warning["services"] == ["candles", "dom", "sentiment"]
    finally:
        process.close()


def test_without_demo_an_existing_database_gets_its_candles(workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'existing.sqlite'}"
    engine = create_engine(url)
    upgrade(engine)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - now_ms % 60_000 - 180_000  # three whole minutes ago
    write_ticks(
        engine,
        [
            Tick("EUR/USD", start_ms + i * 1_000, 1.1 + i * 1e-5, 1.1001 + i * 1e-5)
            for i in range(150)
        ],
    )
    engine.dispose()
    process = start(workdir, "--db", url, "--symbols", "EUR/USD")
    try:
        wait_until(
            lambda: process.health()[1]["services"]["AggregatorService"]["iterations"] > 0,
            30,
            "the candle service iterated",
        )
        assert process.health()[0] == 200
    finally:
        process.close()
    with sqlite3.connect(workdir / "existing.sqlite") as db:
        minutes = db.execute(
            "SELECT ts_open, open FROM candles WHERE symbol = 'EUR/USD' AND timeframe = '1m' "
            "ORDER BY ts_open"
        ).fetchall()
    assert [ts for ts, _ in minutes[:2]] == [start_ms, start_ms + 60_000]
