"""``DemoFeedService``: replays the packaged sample data as if it arrived now.

Each sample series is a *track*: ticks of one pair, the snapshots of an order-book stream,
or the sentiment readings of one pair (``demo/market.py``). The feed maps sample time to wall-clock
time (``speed`` times faster), keeping the spacing between rows, and on each iteration
writes the rows whose time has come, stamped with their wall-clock time. A series that
ends is played backwards, then forwards again, so prices never jump.

The first iteration also writes the last ``backfill_seconds`` worth, stamped in the
recent past, so the candle service finds closed buckets on its first iteration. It starts
after the newest tick already stored for a demo symbol, so a restart does not write
a second price path over the first.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any, Protocol

import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from market_data_services.demo.market import market_tracks
from market_data_services.demo.symbols import TICK_SAMPLES
from market_data_services.ingest.ticks import Tick, write_ticks
from market_data_services.runtime import ThreadedBackgroundService
from market_data_services.runtime.telemetry import families_for
from market_data_services.storage.schema import dom_snapshots, sentiment_readings, ticks


def _rows_counter(registry: CollectorRegistry) -> Counter:
    """``mds_demo_rows_replayed_total`` (made once per registry through ``families_for``)."""
    return Counter(
        "mds_demo_rows_replayed",
        "Sample rows the demo feed wrote, by kind of data and symbol.",
        ["kind", "symbol"],
        registry=registry,
    )


class Track(Protocol):
    """One replayable sample series of one symbol."""

    @property
    def kind(self) -> str:
        """What it holds (``ticks``); a metric label."""

    @property
    def symbol(self) -> str: ...

    @property
    def times_ms(self) -> Sequence[int]:
        """Sample times in ms, non-decreasing, at least one."""

    def write(
        self, engine: Any, rows: Sequence[tuple[int, int]], registry: CollectorRegistry
    ) -> None:
        """Write rows ``(index into times_ms, stamped ts_ms)``; raise when it fails.

        Metrics of the writing (ticks written, crossed, ...) go to ``registry``.
        """


class TickTrack:
    """Bid/ask quotes of one pair."""

    kind = "ticks"

    def __init__(self, symbol: str, times_ms: list[int], bids: list[float], asks: list[float]):
        if not times_ms:
            raise ValueError(f"{symbol}: a track needs at least one row")
        self.symbol = symbol
        self.times_ms = times_ms
        self.bids = bids
        self.asks = asks

    def write(
        self, engine: Any, rows: Sequence[tuple[int, int]], registry: CollectorRegistry
    ) -> None:
        symbol, bids, asks = self.symbol, self.bids, self.asks
        write_ticks(
            engine,
            [
                Tick(symbol=symbol, ts_ms=ts, bid=bids[i], ask=asks[i], volume=None)
                for i, ts in rows
            ],
            registry=registry,
        )


def read_tick_sample(symbol: str, name: str) -> TickTrack:
    """Load a packaged ``ts_ms,bid,ask`` file; a bad row fails naming file and line."""
    data = resources.files("market_data_services.demo").joinpath("samples", name).read_bytes()
    text = gzip.decompress(data).decode("ascii")
    times: list[int] = []
    bids: list[float] = []
    asks: list[float] = []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != ["ts_ms", "bid", "ask"]:
        raise ValueError(f"{name}:1: expected header ts_ms,bid,ask, got {header}")
    for lineno, row in enumerate(reader, start=2):
        try:
            ts, bid, ask = int(row[0]), float(row[1]), float(row[2])
        except (ValueError, IndexError):
            raise ValueError(f"{name}:{lineno}: expected ts_ms,bid,ask, got {row}") from None
        if times and ts < times[-1]:
            raise ValueError(f"{name}:{lineno}: time {ts} before the previous row's {times[-1]}")
        times.append(ts)
        bids.append(bid)
        asks.append(ask)
    return TickTrack(symbol, times, bids, asks)


def packaged_tracks() -> list[Track]:
    """Ticks of each pair, the order-book stream and the sentiment of each pair."""
    tracks: list[Track] = [read_tick_sample(symbol, name) for symbol, name in TICK_SAMPLES.items()]
    tracks += market_tracks()
    return tracks


class Replay:
    """Where one track stands: which row is next, on which pass (even forwards, odd back).

    Owned by the thread running the feed's iterations.
    """

    def __init__(self, track: Track) -> None:
        self.track = track
        times = track.times_ms
        self._first, self._last = times[0], times[-1]
        # A pause between passes, one average spacing, so the turn is not a double tick.
        self._gap = max(1, (self._last - self._first) // max(1, len(times) - 1))
        self._cycle_ms = self._last - self._first + self._gap
        self.cycle = 0
        self.index = 0

    def _offset(self, cycle: int, index: int) -> tuple[int, int]:
        """Sample offset (ms from the replay start) and row of position ``(cycle, index)``."""
        times = self.track.times_ms
        if cycle % 2 == 0:
            row = index
            within = times[index] - self._first
        else:
            row = len(times) - 1 - index
            within = self._last - times[row]
        return cycle * self._cycle_ms + within, row

    def due(self, until_offset_ms: float) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        """Rows ``(row, offset)`` due up to ``until_offset_ms``, and the position after them."""
        out: list[tuple[int, int]] = []
        cycle, index = self.cycle, self.index
        count = len(self.track.times_ms)
        while True:
            offset, row = self._offset(cycle, index)
            if offset > until_offset_ms:
                break
            out.append((row, offset))
            index += 1
            if index == count:
                cycle, index = cycle + 1, 0
        return out, (cycle, index)


class DemoFeedService(ThreadedBackgroundService):
    """Writes the packaged sample data into the database at ``speed`` times real time."""

    def __init__(
        self,
        engine: Any,
        symbols: Sequence[str] | None = None,
        interval_seconds: float = 1.0,
        *,
        speed: float = 1.0,
        backfill_seconds: float = 300.0,
        tracks: Callable[[], Iterable[Track]] = packaged_tracks,
        latest_stored_ms: Callable[[Any, Sequence[str]], int | None] | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(engine, symbols, interval_seconds, registry=registry, **kwargs)
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be > 0, got {speed}")
        if not (math.isfinite(backfill_seconds) and backfill_seconds >= 0):
            raise ValueError(f"backfill_seconds must be >= 0, got {backfill_seconds}")
        self.speed = float(speed)
        self.backfill_seconds = float(backfill_seconds)
        self._load_tracks = tracks
        self._latest_stored_ms = latest_stored_ms or _latest_stored_tick_ms
        self._registry = REGISTRY if registry is None else registry
        self._rows_total = families_for(self._registry, _rows_counter)
        # Set by the first iteration, then owned by the thread running iterations.
        self._replays: list[Replay] | None = None
        self._origin_ms = 0.0

    @property
    def service_name(self) -> str:
        return "DemoFeedService"

    def _process_iteration(self) -> None:
        now_ms = self._wall_clock() * 1000.0
        if self._replays is None:
            self._start(now_ms)
        assert self._replays is not None
        wanted = set(self.get_symbols())
        until = (now_ms - self._origin_ms) * self.speed
        for replay in self._replays:
            track = replay.track
            if track.symbol not in wanted:
                continue
            due, position = replay.due(until)
            if not due:
                continue
            with self.symbol_span(track.symbol):
                stamped = [(row, int(self._origin_ms + offset / self.speed)) for row, offset in due]
                track.write(self.engine, stamped, self._registry)
            # Only after a successful write: a failed one is retried with what came since.
            replay.cycle, replay.index = position
            self._rows_total.labels(track.kind, track.symbol).inc(len(due))

    def _start(self, now_ms: float) -> None:
        tracks = list(self._load_tracks())
        origin = now_ms - self.backfill_seconds * 1000.0
        latest = self._latest_stored_ms(self.engine, sorted({t.symbol for t in tracks}))
        if latest is not None and latest + 1 > origin:
            origin = min(float(latest + 1), now_ms)
        self._origin_ms = origin
        self._replays = [Replay(track) for track in tracks]
        for track in tracks:
            self._rows_total.labels(track.kind, track.symbol)


def _latest_stored_tick_ms(engine: Any, symbols: Sequence[str]) -> int | None:
    """The newest time stored for ``symbols`` in any table the demo writes."""
    latest: list[int] = []
    with engine.connect() as connection:
        for table in (ticks, dom_snapshots, sentiment_readings):
            query = sa.select(sa.func.max(table.c.ts)).where(table.c.symbol.in_(list(symbols)))
            value = connection.execute(query).scalar()
            if value is not None:
                latest.append(int(value))
    return max(latest, default=None)
