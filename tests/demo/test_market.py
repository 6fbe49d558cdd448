"""The demo's order-book and sentiment tracks, written for real and turned into metrics."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from market_data_services import DOMAggregatorService, SentimentAggregatorService
from market_data_services.demo import DEMO_SYMBOLS, DemoFeedService
from market_data_services.demo.market import (
    BOOK_LEVELS,
    BOOK_SAMPLES,
    SENTIMENT_SYMBOLS,
    read_book_sample,
    read_sentiment_sample,
)
from market_data_services.storage import dom_metrics, sentiment_metrics

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "market_data_services" / "demo" / "samples"


def test_the_book_sample_replays_every_message_of_the_bybit_stream() -> None:
    [(symbol, name)] = BOOK_SAMPLES.items()
    track = read_book_sample(symbol, name)
    with gzip.open(SAMPLES / name, "rt") as stream:
        messages = [json.loads(line) for line in stream]
    assert track.times_ms == [m["ts"] for m in messages]
    bids, asks = track.books[0]
    assert len(bids) == len(asks) == BOOK_LEVELS
    snapshot = messages[0]["data"]  # the first message is the full book, best first
    np.testing.assert_array_equal(bids, np.array(snapshot["b"][:BOOK_LEVELS], dtype=float))
    np.testing.assert_array_equal(asks, np.array(snapshot["a"][:BOOK_LEVELS], dtype=float))


def test_the_sentiment_sample_holds_the_ig_long_percentages() -> None:
    track = read_sentiment_sample("EUR/USD")
    assert track.shares == [0.39, 0.39, 0.39]  # the export's EURUSD column, 39.0 % long
    assert len(set(track.times_ms)) == 3


def test_the_demo_feed_gives_the_book_and_sentiment_services_data_at_once(
    engine: Engine,
) -> None:
    registry = CollectorRegistry()
    now = 1_700_000_000.0
    feed = DemoFeedService(engine, list(DEMO_SYMBOLS), registry=registry, wall_clock=lambda: now)
    feed.run_once()  # the warm-up: the last 300 s of replay, stamped in the recent past
    dom = DOMAggregatorService(engine, symbols=list(BOOK_SAMPLES), registry=registry)
    sentiment = SentimentAggregatorService(
        engine, symbols=list(SENTIMENT_SYMBOLS), registry=registry
    )
    dom.run_once()
    sentiment.run_once()
    with engine.connect() as connection:
        books = connection.execute(select(func.count()).select_from(dom_metrics)).scalar_one()
        shares = connection.execute(
            select(sentiment_metrics.c.symbol, sentiment_metrics.c.long_share)
        ).all()
    assert books > 1000  # about 60 passes of the 5-second stream
    assert {symbol for symbol, _ in shares} == set(SENTIMENT_SYMBOLS)
    assert np.isclose(
        registry.get_sample_value("mds_sentiment_long_share_ratio", {"symbol": "EUR/USD"}), 0.39
    )
    assert registry.get_sample_value("mds_dom_spread", {"symbol": "XRPUSDT"}) > 0
