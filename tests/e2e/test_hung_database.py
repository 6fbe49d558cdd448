"""``mds run`` against a PostgreSQL that stops answering, and one that blocks on a lock.

A forwarder that can be paused (tests/proxy.py) sits between the service and the server:
paused, it keeps every socket open and forwards nothing, which is what a frozen server or
a network partition looks like to a client while something still acknowledges packets.
No server-side timeout can fire then; the service's own deadlines must.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.databases import DatabaseFactory
from tests.e2e.mds_process import MdsProcess, wait_until
from tests.proxy import PausableProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FEED = "DemoFeedService"

#: The feed writes every 0.2 s and opens its breaker after two failures; a statement may
#: take 0.5 s (the client cuts a silent server off at 1.5 s), a connection 2 s. Four HTTP
#: threads: fewer than the concurrent /readyz probes below.
ARGS = [
    "--demo",
    "--speed",
    "30",
    "--set",
    "database.migrate=always",
    "--set",
    "database.statement_timeout_seconds=0.5",
    "--set",
    "database.connect_timeout_seconds=2",
    "--set",
    "services.demo_feed.interval_seconds=0.2",
    "--set",
    "services.demo_feed.circuit_breaker.failure_threshold=2",
    "--set",
    "services.demo_feed.circuit_breaker.timeout_seconds=1",
    "--set",
    "services.candles.interval_seconds=0.5",
    "--set",
    "services.candles.circuit_breaker.failure_threshold=2",
    "--set",
    "services.candles.circuit_breaker.timeout_seconds=1",
    "--set",
    "http.threads=4",
]

#: What a probe may take: /readyz answers within 2 s whatever the database does.
PROBE_TIMEOUT_SECONDS = 2.0


@pytest.fixture
def postgres_url(database_factory: DatabaseFactory) -> Iterator[str]:
    url = database_factory.url("postgresql")
    yield url
    database_factory.drop(url)


def get(process: MdsProcess, path: str) -> tuple[int, str] | None:
    """The answer, or None when none came within ``PROBE_TIMEOUT_SECONDS``."""
    try:
        return process.get(path, timeout=PROBE_TIMEOUT_SECONDS)
    except (TimeoutError, urllib.error.URLError):
        return None


def feed(process: MdsProcess) -> dict[str, Any]:
    entry: dict[str, Any] = process.health()[1]["services"][FEED]
    return entry


def breaker_state(process: MdsProcess, service: str) -> float:
    answer = get(process, "/metrics")
    assert answer is not None and answer[0] == 200
    for family in text_string_to_metric_families(answer[1]):
        if family.name == "mds_service_circuit_breaker_state":
            for sample in family.samples:
                if sample.labels["service"] == service:
                    return float(sample.value)
    raise AssertionError(f"no breaker state for {service}")


def probe_flood(process: MdsProcess, seconds: float, callers: int) -> list[tuple[int, str] | None]:
    """``callers`` threads asking /readyz over and over for ``seconds``; every answer."""
    answers: list[tuple[int, str] | None] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def ask() -> None:
        while time.monotonic() < end:
            answer = get(process, "/readyz")
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(callers)]
    for thread in threads:
        thread.start()
    # Meanwhile the other routes answer: the probes hold no HTTP worker for long.
    while time.monotonic() < end:
        assert get(process, "/healthz") == (200, "ok\n")
        assert breaker_state(process, FEED) in (0.0, 1.0, 2.0)
        time.sleep(0.2)
    for thread in threads:
        thread.join(PROBE_TIMEOUT_SECONDS + 5)
    return answers


def test_a_database_that_stops_answering_opens_the_breaker_keeps_http_free_and_recovers(
    tmp_path: Path, postgres_url: str
) -> None:
    upstream = make_url(postgres_url)
    with PausableProxy(upstream.host or "127.0.0.1", upstream.port or 5432) as proxy:
        proxied = upstream.set(host="127.0.0.1", port=proxy.port)
        process = MdsProcess(
            [*ARGS, "--db", proxied.render_as_string(hide_password=False)], cwd=tmp_path
        )
        try:
            wait_until(lambda: feed(process)["iterations"] > 3, 30, "the feed iterates")
            wait_until(lambda: _ready(process), 10, "/readyz answers 200")
            errors_before = feed(process)["errors"]

            proxy.pause()

            # Eight callers at once against four HTTP threads, for six seconds: every
            # probe is answered on time, and once the database has been silent for the
            # probe's deadline, the answer is 503 naming the database.
            answers = probe_flood(process, seconds=6, callers=8)
            assert None not in answers, "a /readyz probe got no answer within 2 s"
            assert len(answers) > 20
            status, body = answers[-1]  # type: ignore[misc]
            assert status == 503, body
            report = json.loads(body)
            assert report["database"] is False
            # Probes answer at the deadline while the check hangs; a check that outlives
            # the connect timeout (5 s) ends with the driver's error instead.
            errors = {json.loads(b).get("database_error") for s, b in answers if s == 503}  # type: ignore[misc]
            assert "no answer within 1.5 s" in errors, errors
            assert errors <= {"no answer within 1.5 s", "OperationalError"}, errors

            # Iterations fail (they do not block for ever) and the breaker opens.
            wait_until(lambda: breaker_state(process, FEED) == 2.0, 30, "the feed's breaker opens")
            entry = feed(process)
            assert entry["errors"] >= errors_before + 2, entry
            assert entry["circuit_breaker"] in ("open", "half_open"), entry
            last_error = entry["last_error"]["error"]
            assert (
                "no answer from PostgreSQL" in last_error
                or "connection timeout expired" in last_error
            ), last_error
            assert process.proc.poll() is None

            proxy.resume()

            # The same process recovers by itself: breaker closed, new successes, ready.
            failed_at = feed(process)["last_error"]["timestamp"]
            wait_until(
                lambda: (
                    feed(process)["circuit_breaker"] == "closed"
                    and (feed(process)["last_success"] or "") > failed_at
                ),
                30,
                "the feed succeeds again with its breaker closed",
            )
            wait_until(lambda: _ready(process), 10, "/readyz answers 200 again")
            assert breaker_state(process, FEED) == 0.0
        finally:
            proxy.resume()
            process.close()


def _ready(process: MdsProcess) -> bool:
    answer = get(process, "/readyz")
    return answer is not None and answer[0] == 200


@contextlib.contextmanager
def table_locked(url: str, table: str) -> Iterator[None]:
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as connection:
        connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.rollback()


def test_a_lock_held_longer_than_the_statement_timeout_fails_iterations_not_readiness(
    tmp_path: Path, postgres_url: str
) -> None:
    """With a lock wait allowed for a minute, the statement timeout is what ends it."""
    process = MdsProcess(
        [
            *ARGS,
            "--db",
            postgres_url,
            "--set",
            "database.busy_timeout_seconds=60",
        ],
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: feed(process)["iterations"] > 3, 30, "the feed iterates")
        with table_locked(postgres_url, "ticks"):
            wait_until(lambda: breaker_state(process, FEED) == 2.0, 30, "the feed's breaker opens")
            entry = feed(process)
            assert (
                "canceling statement due to statement timeout" in (entry["last_error"]["error"])
            ), entry
            answer = get(process, "/readyz")
            assert answer is not None and answer[0] == 200, answer  # the server answers
        failed_at = feed(process)["last_error"]["timestamp"]
        wait_until(
            lambda: (
                feed(process)["circuit_breaker"] == "closed"
                and (feed(process)["last_success"] or "") > failed_at
            ),
            30,
            "the feed succeeds again once the lock is gone",
        )
    finally:
        process.close()
