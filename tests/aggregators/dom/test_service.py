from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

from market_data_services import DOMAggregatorService
from market_data_services.ingest.dom import BookSnapshot, ingest_dom, write_dom
from market_data_services.market.book import pack_levels
from market_data_services.runtime import IterationOutcome
from market_data_services.storage import dom_metrics, dom_snapshots, service_progress
from market_data_services.storage.arrival import position_of
from tests.books import (
    Book,
    assert_metrics_equal,
    bybit_books,
    expected_metrics,
    random_books,
    stored_metrics,
    tardis_books,
)

NOW = 1_700_000_000.0
TARDIS_25 = "tardis_binance-futures_book_snapshot_25_BTCUSDT.csv.gz"
BYBIT = "bybit_2024-12-01_XRPUSDT_ob500.data.gz"


def write(engine: Engine, books: list[Book]) -> None:
    report = write_dom(
        engine,
        [BookSnapshot(b.symbol, b.ts, b.bids, b.asks) for b in books],
        wall_clock=lambda: NOW,
    )
    assert report.rejected == 0


def service(engine: Engine, symbols: list[str], **kwargs: object) -> DOMAggregatorService:
    kwargs.setdefault("registry", CollectorRegistry())
    return DOMAggregatorService(engine, symbols=symbols, wall_clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# -- the metrics, against the definitions ------------------------------------------------------


def test_metrics_of_the_real_tardis_books_match_the_definitions(
    engine: Engine, orderbook_dir: Path
) -> None:
    ingest_dom(engine, orderbook_dir / TARDIS_25)
    assert service(engine, ["BTCUSDT"]).run_once() is IterationOutcome.SUCCEEDED
    expected = expected_metrics(tardis_books(orderbook_dir / TARDIS_25))
    actual = stored_metrics(engine, "BTCUSDT")
    assert_metrics_equal(actual, expected)
    assert any(row["ofi"] != 0 for row in actual)
    assert all(row["depth_bid_10bps"] > 0 for row in actual)


def test_metrics_of_the_rebuilt_bybit_books_match_the_definitions(
    engine: Engine, orderbook_dir: Path
) -> None:
    ingest_dom(engine, orderbook_dir / BYBIT)
    service(engine, ["XRPUSDT"]).run_once()
    expected = expected_metrics(bybit_books(orderbook_dir / BYBIT))
    assert_metrics_equal(stored_metrics(engine, "XRPUSDT"), expected)


def test_metrics_of_a_generated_stream_match_the_definitions(engine: Engine) -> None:
    books = random_books(1, 700)  # above COPY_THRESHOLD: PostgreSQL writes by binary COPY
    write(engine, books)
    service(engine, ["EUR/USD"]).run_once()
    actual = stored_metrics(engine, "EUR/USD")
    assert_metrics_equal(actual, expected_metrics(books))
    # The stream has what the formulas branch on: crossed tops and OFI of both signs.
    assert min(r["spread"] for r in actual) < 0
    assert min(r["ofi"] for r in actual) < 0 < max(r["ofi"] for r in actual)


def test_symbols_are_computed_separately(engine: Engine) -> None:
    eur = random_books(2, 50, symbol="EUR/USD")
    gbp = random_books(3, 50, symbol="GBP/USD")
    write(engine, [b for pair in zip(eur, gbp, strict=True) for b in pair])
    service(engine, ["EUR/USD", "GBP/USD"]).run_once()
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected_metrics(eur))
    assert_metrics_equal(stored_metrics(engine, "GBP/USD"), expected_metrics(gbp))


# -- progress, late data, restarts ---------------------------------------------------------


def test_new_snapshots_continue_the_ofi_of_the_last_processed_one(engine: Engine) -> None:
    books = random_books(4, 120)
    dom = service(engine, ["EUR/USD"])
    write(engine, books[:70])
    dom.run_once()
    write(engine, books[70:])
    dom.run_once()
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected_metrics(books))


@pytest.mark.parametrize("batch_size", [2, 9, 5000])
def test_late_snapshots_get_metrics_and_their_successors_new_ofi(
    engine: Engine, batch_size: int
) -> None:
    books = random_books(5, 160)
    rng = np.random.default_rng(0)
    late = set(rng.choice(len(books), size=20, replace=False).tolist())
    late |= set(range(100, 115))  # and a run of them
    on_time = [b for i, b in enumerate(books) if i not in late]
    dom = service(engine, ["EUR/USD"], batch_size=batch_size)
    write(engine, on_time)
    dom.run_once()
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected_metrics(on_time))
    write(engine, [b for i, b in enumerate(books) if i in late])
    dom.run_once()
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected_metrics(books))


def test_only_new_snapshots_and_their_successors_are_rewritten(engine: Engine) -> None:
    books = random_books(6, 200)
    write(engine, books[:99] + books[100:])
    dom = service(engine, ["EUR/USD"])
    dom.run_once()
    # Mark every stored row, then deliver the one missing book: only it and the next change.
    with engine.begin() as connection:
        connection.execute(dom_metrics.update().values(spread_bps=-1.0))
    write(engine, [books[99]])
    dom.run_once()
    rewritten = [r["ts"] for r in stored_metrics(engine, "EUR/USD") if r["spread_bps"] != -1.0]
    assert rewritten == [books[99].ts, books[100].ts]


def test_a_restart_resumes_from_the_stored_progress_and_counts_each_book_once(
    engine: Engine,
) -> None:
    books = random_books(8, 100)
    write(engine, books)
    ticks = itertools.count(0.0, 100.0)  # every clock read is 100 s later: one batch each
    registry = CollectorRegistry()
    first = service(
        engine, ["EUR/USD"], batch_size=10, registry=registry, clock=lambda: next(ticks)
    )
    first.run_once()
    assert len(stored_metrics(engine, "EUR/USD")) < 100
    del first  # a new process: one live service per name on a registry
    second = service(engine, ["EUR/USD"], batch_size=10, registry=registry)
    second.run_once()
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected_metrics(books))
    assert sample(registry, "mds_dom_snapshots_processed_total", symbol="EUR/USD") == 100


def test_running_again_or_from_scratch_gives_the_same_table(engine: Engine) -> None:
    books = random_books(9, 150)
    write(engine, books)
    dom = service(engine, ["EUR/USD"], batch_size=16)
    dom.run_once()
    once = stored_metrics(engine, "EUR/USD")
    dom.run_once()
    assert stored_metrics(engine, "EUR/USD") == once
    with engine.begin() as connection:
        connection.execute(delete(service_progress))
    service(engine, ["EUR/USD"], batch_size=7).run_once()
    assert stored_metrics(engine, "EUR/USD") == once


def test_catch_up_works_until_done_whatever_the_time_budget(engine: Engine) -> None:
    books = random_books(10, 90)
    write(engine, books)
    ticks = itertools.count(0.0, 100.0)
    dom = service(engine, ["EUR/USD"], batch_size=10, clock=lambda: next(ticks))
    dom.catch_up()
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected_metrics(books))


# -- bad stored rows, metrics, spans ---------------------------------------------------------


def test_bad_rows_written_by_other_tools_are_skipped_counted_and_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    books = random_books(11, 10)
    books += random_books(111, 10, start_ms=books[-1].ts + 1000)
    write(engine, books[:10])
    unsorted = pack_levels([[1.0, 1.0], [1.1, 1.0]])
    with engine.begin() as connection:
        connection.execute(
            insert(dom_snapshots),
            [
                {"symbol": "EUR/USD", "ts": books[9].ts + 1, "bids": b"\x01" * 15, "asks": b""},
                {"symbol": "EUR/USD", "ts": books[9].ts + 2, "bids": unsorted, "asks": unsorted},
            ],
        )
    write(engine, books[10:])
    registry = CollectorRegistry()
    caplog.set_level(logging.WARNING, "market_data_services.aggregators.dom")
    outcome = service(engine, ["EUR/USD"], registry=registry).run_once()
    assert outcome is IterationOutcome.SUCCEEDED
    # The bad rows have no metrics; the book after them gets its OFI from books[9].
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected_metrics(books))
    assert sample(registry, "mds_dom_snapshots_rejected_total", reason="malformed") == 1
    assert sample(registry, "mds_dom_snapshots_rejected_total", reason="unsorted_levels") == 1
    logged = [r for r in caplog.records if r.getMessage() == "dom.snapshot_rejected"]
    assert [r.reason for r in logged] == ["malformed", "unsorted_levels"]  # type: ignore[attr-defined]


def test_gauges_show_the_latest_book_of_each_configured_symbol(engine: Engine) -> None:
    eur = random_books(12, 40, symbol="EUR/USD")
    other = random_books(13, 40, symbol="USD/JPY")
    write(engine, eur + other)
    registry = CollectorRegistry()
    service(engine, ["EUR/USD"], registry=registry).run_once()
    last = expected_metrics(eur)[-1]
    assert sample(registry, "mds_dom_spread", symbol="EUR/USD") == pytest.approx(last["spread"])
    assert sample(registry, "mds_dom_spread_bps", symbol="EUR/USD") == pytest.approx(
        last["spread_bps"]
    )
    assert sample(registry, "mds_dom_microprice", symbol="EUR/USD") == pytest.approx(
        last["microprice"]
    )
    assert sample(registry, "mds_dom_imbalance_ratio", symbol="EUR/USD", levels="5") == (
        pytest.approx(last["imbalance_5"])
    )
    assert sample(registry, "mds_dom_last_snapshot_timestamp_seconds", symbol="EUR/USD") == (
        eur[-1].ts / 1000
    )
    assert sample(registry, "mds_dom_snapshots_processed_total", symbol="EUR/USD") == 40
    labelled = {
        s.labels.get("symbol")
        for metric in registry.collect()
        for s in metric.samples
        if s.name.startswith("mds_dom")
    }
    assert labelled <= {"EUR/USD", None}


def test_each_symbol_is_worked_in_its_own_span(engine: Engine) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    write(engine, random_books(14, 5, symbol="EUR/USD"))
    dom = service(engine, ["EUR/USD", "GBP/USD"], tracer=provider.get_tracer("test"))
    dom.run_once()
    spans = exporter.get_finished_spans()
    assert [s.attributes["symbol"] for s in spans if s.name == "DOMAggregatorService.symbol"] == [
        "EUR/USD",
        "GBP/USD",
    ]
    assert [s.name for s in spans if s.parent is None] == ["DOMAggregatorService.iteration"]


def test_a_failing_database_fails_the_iteration_and_the_service_recovers(
    engine: Engine,
) -> None:
    books = random_books(15, 30)
    write(engine, books)
    dom = service(engine, ["EUR/USD"])
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE dom_metrics RENAME TO dom_metrics_away")
    assert dom.run_once() is IterationOutcome.FAILED
    assert dom.get_metrics()["recent_errors"][0]["type"] in {"OperationalError", "ProgrammingError"}
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE dom_metrics_away RENAME TO dom_metrics")
    assert dom.run_once() is IterationOutcome.SUCCEEDED
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected_metrics(books))


def test_the_stored_progress_is_the_newest_arrival_position(engine: Engine) -> None:
    """The id on SQLite, the inserting transaction on PostgreSQL (storage/arrival.py)."""
    write(engine, random_books(16, 12))
    service(engine, ["EUR/USD"]).run_once()
    with engine.connect() as connection:
        progress = dict(
            connection.execute(
                select(service_progress.c.key, service_progress.c.value).where(
                    service_progress.c.symbol == "EUR/USD"
                )
            ).all()
        )
        newest = connection.execute(
            select(func.max(position_of(connection, dom_snapshots)))
        ).scalar()
    assert newest is not None
    assert progress == {"arrival_id": newest, "target_id": None, "cursor_ts": None}
