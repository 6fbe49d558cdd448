from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from market_data_services.demo import DEMO_SYMBOLS, DemoFeedService, read_tick_sample
from market_data_services.demo.feed import TICK_SAMPLES, Replay
from market_data_services.demo.market import BOOK_SAMPLES, SENTIMENT_SYMBOLS


class Recorded:
    """A track that keeps what the feed writes (the Track protocol, in memory)."""

    kind = "ticks"

    def __init__(self, symbol: str, times_ms: list[int]) -> None:
        self.symbol = symbol
        self.times_ms = times_ms
        self.written: list[tuple[int, int]] = []
        self.fail = False

    def write(self, engine: Any, rows: Sequence[tuple[int, int]], registry: Any) -> None:
        if self.fail:
            raise RuntimeError("database is locked")
        self.written.extend(rows)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def feed(
    tracks: list[Recorded], clock: Clock, *, latest: int | None = None, **kwargs: Any
) -> DemoFeedService:
    return DemoFeedService(
        None,
        [t.symbol for t in tracks],
        tracks=lambda: tracks,
        latest_stored_ms=lambda _engine, _symbols: latest,
        wall_clock=clock,
        registry=CollectorRegistry(),
        **kwargs,
    )


def test_packaged_samples_load_and_cover_the_demo_symbols() -> None:
    for symbol, name in TICK_SAMPLES.items():
        track = read_tick_sample(symbol, name)
        assert len(track.times_ms) > 1000
        assert track.times_ms == sorted(track.times_ms)
        assert all(b > 0 and a > 0 for b, a in zip(track.bids, track.asks, strict=True))
    # The tick pairs, and the order-book stream's symbol (sentiment covers the pairs).
    assert set(DEMO_SYMBOLS) == set(TICK_SAMPLES) | set(BOOK_SAMPLES)
    assert set(SENTIMENT_SYMBOLS) <= set(TICK_SAMPLES)


def test_replay_plays_forwards_then_backwards_keeping_the_spacing() -> None:
    replay = Replay(Recorded("EUR/USD", [100, 130, 200]))
    due, position = replay.due(until_offset_ms=10_000)
    rows = [row for row, _ in due]
    offsets = [offset for _, offset in due]
    # forwards 0,1,2; a gap of one mean spacing (50 ms); backwards 2,1,0; ...
    assert rows[:6] == [0, 1, 2, 2, 1, 0]
    assert offsets[:6] == [0, 30, 100, 150, 220, 250]
    assert all(b >= a for a, b in itertools.pairwise(offsets))
    assert position == (len(rows) // 3, len(rows) % 3)


def test_first_iteration_backfills_stamped_in_the_recent_past() -> None:
    track = Recorded("EUR/USD", [0, 1_000, 2_000, 300_000, 400_000])
    clock = Clock(1_700_000_000.0)
    service = feed([track], clock, backfill_seconds=300.0)
    service.run_once()
    now_ms = int(clock.now * 1000)
    stamps = [ts for _, ts in track.written]
    assert [row for row, _ in track.written] == [0, 1, 2, 3]  # 400 s is still in the future
    assert stamps == [now_ms - 300_000, now_ms - 299_000, now_ms - 298_000, now_ms]
    clock.now += 100.0
    service.run_once()
    assert track.written[-1] == (4, now_ms + 100_000)


def test_speed_compresses_the_spacing() -> None:
    track = Recorded("EUR/USD", [0, 10_000, 20_000])
    clock = Clock(1_700_000_000.0)
    service = feed([track], clock, speed=10.0, backfill_seconds=0.0)
    service.run_once()
    clock.now += 2.0
    service.run_once()
    start = int(1_700_000_000.0 * 1000)
    assert track.written == [(0, start), (1, start + 1_000), (2, start + 2_000)]


def test_start_follows_the_newest_stored_tick_so_a_restart_adds_no_second_path() -> None:
    track = Recorded("EUR/USD", [0, 60_000, 120_000])
    clock = Clock(1_700_000_000.0)
    now_ms = int(clock.now * 1000)
    service = feed([track], clock, latest=now_ms - 30_000, backfill_seconds=300.0)
    service.run_once()
    assert track.written == [(0, now_ms - 30_000 + 1)]


def test_a_failed_write_is_retried_with_everything_due_since() -> None:
    track = Recorded("EUR/USD", [0, 1_000, 2_000, 3_000])
    clock = Clock(1_700_000_000.0)
    service = feed([track], clock, backfill_seconds=0.0)
    track.fail = True
    service.run_once()
    clock.now += 2.0
    service.run_once()
    assert service.get_metrics()["error_count"] == 2
    track.fail = False
    clock.now += 1.0
    service.run_once()
    assert [row for row, _ in track.written] == [0, 1, 2, 3]


def test_only_configured_symbols_are_replayed() -> None:
    eur = Recorded("EUR/USD", [0, 1])
    nzd = Recorded("NZD/USD", [0, 1])
    clock = Clock(1_700_000_000.0)
    service = DemoFeedService(
        None,
        ["NZD/USD"],
        tracks=lambda: [eur, nzd],
        latest_stored_ms=lambda _e, _s: None,
        wall_clock=clock,
        registry=CollectorRegistry(),
        backfill_seconds=0.0,
    )
    service.run_once()
    assert eur.written == []
    assert nzd.written == [(0, int(clock.now * 1000))]


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan")])
def test_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be > 0"):
        DemoFeedService(None, speed=speed, registry=CollectorRegistry())
