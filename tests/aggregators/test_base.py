"""``PerSymbolService``, the engine under the book and sentiment services, through a small
real service of its own: what every per-symbol service gets without writing it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Engine

from market_data_services.aggregators.base import PerSymbolService
from market_data_services.ingest.sentiment import SentimentReading, write_sentiment
from market_data_services.runtime import CircuitBreaker, IterationOutcome
from market_data_services.storage import create_engine, sentiment_readings, upgrade
from market_data_services.storage.ownership import SymbolOwnership
from tests.databases import DatabaseFactory

NOW = 1_800_000_000.0


class Recorder(PerSymbolService[Any]):
    """Records the symbols it works on and their stored progress; fails on ``BAD/SYM``."""

    SERVICE_NAME = "RecorderService"
    source_table = sentiment_readings
    log_event_prefix = "recorder"

    def __init__(self, engine: Engine, symbols: list[str], **kwargs: Any) -> None:
        super().__init__(
            engine, symbols, registry=CollectorRegistry(), wall_clock=lambda: NOW, **kwargs
        )
        self.worked: list[str] = []
        self.prepare_failures = 0

    def _prepare(self) -> None:
        if self.prepare_failures:
            self.prepare_failures -= 1
            raise RuntimeError("the table cannot be created yet")

    def _work_on(self, symbol: str, deadline: float | None) -> None:
        self.worked.append(symbol)
        if symbol == "BAD/SYM":
            raise ValueError(f"no rows for {symbol}")
        with self.engine.begin() as connection:
            seen = self._read_progress(connection, symbol).get("seen") or 0
            self._write_progress(connection, symbol, {"seen": seen + 1})

    def seen(self, symbol: str) -> int | None:
        with self.engine.connect() as connection:
            return self._read_progress(connection, symbol).get("seen")


def test_a_failing_symbol_fails_the_iteration_but_the_others_are_worked(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    service = Recorder(engine, ["EUR/USD", "BAD/SYM", "NZD/USD"])
    with caplog.at_level(logging.WARNING):
        assert service.run_once() is IterationOutcome.FAILED
    assert service.worked == ["EUR/USD", "BAD/SYM", "NZD/USD"]
    assert service.seen("EUR/USD") == 1 and service.seen("NZD/USD") == 1
    (failed,) = [r for r in caplog.records if r.getMessage() == "recorder.symbol_failed"]
    assert (failed.symbol, failed.error_type) == ("BAD/SYM", "ValueError")  # type: ignore[attr-defined]
    assert service.get_metrics()["recent_errors"][-1]["error"] == "no rows for BAD/SYM"


def test_catch_up_raises_the_iteration_error(engine: Engine) -> None:
    service = Recorder(engine, ["EUR/USD"])
    with pytest.raises(ValueError, match="no rows for BAD/SYM"):
        service.catch_up(["BAD/SYM"])
    service.catch_up()
    assert service.seen("EUR/USD") == 1


def test_catch_up_with_the_breaker_open_says_nothing_was_done(engine: Engine) -> None:
    breaker = CircuitBreaker(failure_threshold=1, timeout=600.0, name="RecorderService")
    service = Recorder(engine, ["BAD/SYM"], circuit_breaker=breaker)
    assert service.run_once() is IterationOutcome.FAILED
    with pytest.raises(RuntimeError, match="circuit breaker is open, nothing was done"):
        service.catch_up(["EUR/USD"])
    assert service.seen("EUR/USD") is None


def test_prepare_is_retried_each_iteration_until_it_succeeds_once(engine: Engine) -> None:
    service = Recorder(engine, ["EUR/USD"])
    service.prepare_failures = 1
    assert service.run_once() is IterationOutcome.FAILED
    assert service.worked == []  # no symbol is worked before the service is prepared
    assert service.run_once() is IterationOutcome.SUCCEEDED
    assert service.run_once() is IterationOutcome.SUCCEEDED
    assert service.seen("EUR/USD") == 2


def test_stored_symbols_are_those_with_rows_in_the_source_table(engine: Engine) -> None:
    assert Recorder.stored_symbols(engine) == []
    readings = [SentimentReading("USD/CHF", 1_700_000_000_000, 0.4)]
    readings.append(SentimentReading("EUR/USD", 1_700_000_000_000, 0.6))
    report = write_sentiment(engine, readings, wall_clock=lambda: NOW)
    assert report.rejected == 0
    assert Recorder.stored_symbols(engine) == ["EUR/USD", "USD/CHF"]


@pytest.mark.postgres
def test_services_sharing_symbols_work_only_their_own_and_a_lost_session_owns_nothing(
    database_factory: DatabaseFactory,
) -> None:
    pg = create_engine(database_factory.url("postgresql"))
    upgrade(pg)
    symbols = ["EUR/USD", "GBP/USD", "NZD/USD", "USD/JPY"]
    a = Recorder(
        pg, symbols, ownership=SymbolOwnership(pg, "RecorderService", application_name="a")
    )
    b = Recorder(
        pg, symbols, ownership=SymbolOwnership(pg, "RecorderService", application_name="b")
    )
    try:
        for _ in range(2):  # the first to claim takes all, then gives half up
            for service in (a, b):
                service.worked.clear()
                assert service.run_once() is IterationOutcome.SUCCEEDED
        assert a.worked == a.owned_symbols() and b.worked == b.owned_symbols()
        assert sorted(a.worked + b.worked) == symbols
        # Seen from the last to claim: every symbol has an owner.
        assert b.get_metrics()["ownership"] == {
            "shared": True,
            "instances": 2,
            "unowned_symbols": [],
        }

        with pg.connect() as connection:  # the server ends a's session, as for a dead host
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'a'"
                )
            )
        a.worked.clear()
        assert a.run_once() is IterationOutcome.FAILED  # its claim fails: it works nothing
        assert a.worked == [] and a.owned_symbols() == []
        assert b.run_once() is IterationOutcome.SUCCEEDED
        assert sorted(b.owned_symbols()) == symbols  # b took a's at its next iteration
        assert a.run_once() is IterationOutcome.SUCCEEDED  # reconnected; nothing free
        assert a.owned_symbols() == []
    finally:
        a.stop(1.0)
        b.stop(1.0)
        pg.dispose()
