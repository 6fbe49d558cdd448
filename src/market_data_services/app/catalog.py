"""The service catalog: every service ``mds run`` can start, one entry each.

An entry names the service's config section (``[services.<name>]``), its defaults, its
own keys (a frozen dataclass whose fields become keys of that section), the symbols it
brings when none are configured (the demo feed's sample pairs), and a factory that builds
it from a :class:`ServiceContext`, and how ``mds backfill`` builds its stored history
(:class:`Backfill`). Adding a service is adding one entry to ``SERVICES``; the
configuration (``ConfigSource`` is given this catalog), ``mds config show``, the
environment variables, ``mds run``, ``mds backfill``, the health endpoint and shutdown
pick it up from here.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from market_data_services.aggregators.retention.policies import (
    DEFAULT_BATCH_SIZE as RETENTION_BATCH_SIZE,
)
from market_data_services.aggregators.retention.policies import check_policies
from market_data_services.aggregators.sentiment.signal import ContrarianThresholds
from market_data_services.app.config.loader import Override
from market_data_services.app.config.model import (
    BreakerConfig,
    ConfigError,
    DefaultSymbols,
    ServiceConfig,
)
from market_data_services.demo.symbols import DEMO_SERVICE_SYMBOLS, DEMO_SYMBOLS
from market_data_services.market.candles import PRICE_BASES
from market_data_services.market.timeframes import TIMEFRAMES
from market_data_services.runtime import CircuitBreaker, ThreadedBackgroundService
from market_data_services.runtime.ownership import SymbolOwnership
from market_data_services.runtime.service import FailureClassifier
from market_data_services.timeutil import format_ms, parse_day_start, parse_timestamp_ms, parse_zone

if TYPE_CHECKING:
    from market_data_services.aggregators.base import PerSymbolService
    from market_data_services.aggregators.candles import AggregatorService, BackfillProgress

# Each service is imported by its factory and backfill, when it is built: a command that
# needs one service (mds backfill --kind candles) does not import the others, the
# ingestion they count in and the demo feed, and mds ingest imports none.


@dataclass(frozen=True, kw_only=True)
class ServiceContext:
    """What a factory gets: the engine, its settings, and the shared plumbing."""

    name: str  # the catalog key
    service_name: str
    engine: Any
    config: ServiceConfig
    registry: CollectorRegistry
    symbol_provider: Callable[[], Iterable[str]]
    symbol_cache_ttl_seconds: float
    #: Recognises known conditions (a missing schema) among iteration errors.
    failure_classifier: FailureClassifier | None = None
    #: Makes the ownership through which instances share a service's symbols (given the
    #: service_name), or None: every instance works every symbol (SQLite, backfills).
    ownership_factory: Callable[[str], SymbolOwnership] | None = None

    @property
    def options(self) -> Any:
        return self.config.options

    def ownership(self) -> SymbolOwnership | None:
        """The symbol ownership of a per-symbol service, for its ``ownership=`` keyword."""
        factory = self.ownership_factory
        return None if factory is None else factory(self.service_name)

    def base_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``ThreadedBackgroundService`` from the common settings."""
        breaker: BreakerConfig = self.config.circuit_breaker
        return {
            "interval_seconds": self.config.interval_seconds,
            "registry": self.registry,
            "symbol_provider": self.symbol_provider,
            "symbol_cache_ttl_seconds": self.symbol_cache_ttl_seconds,
            "first_start_jitter_seconds": self.config.first_start_jitter_seconds,
            "stuck_after_seconds": self.config.stuck_after_seconds,
            "failure_classifier": self.failure_classifier,
            "circuit_breaker": CircuitBreaker(
                failure_threshold=breaker.failure_threshold,
                timeout=breaker.timeout_seconds,
                half_open_max_calls=breaker.half_open_max_calls,
                name=self.service_name,
            ),
        }


Factory = Callable[[ServiceContext], ThreadedBackgroundService]


@dataclass(frozen=True, kw_only=True)
class BackfillRequest:
    """What ``mds backfill`` hands an entry's ``Backfill.run``."""

    #: The service, built by the entry's factory for ``symbols`` with a registry of its own.
    service: Any
    symbols: Sequence[str]
    registry: CollectorRegistry
    #: The command's parsed flags (those the entry's ``add_arguments`` added among them).
    args: argparse.Namespace
    options: Any
    #: ``time.monotonic()`` when the command began this service.
    started: float
    #: ``progress_bar(total, unit)``: a bar on stderr (none with --no-progress).
    progress_bar: Callable[[int, str], Any]


@dataclass(frozen=True, kw_only=True)
class Backfill:
    """How ``mds backfill`` builds a service's stored history."""

    #: Every symbol with stored input, used when none are configured or given.
    stored_symbols: Callable[[Any], list[str]]
    #: Does the work and returns the summary line the command prints.
    run: Callable[[BackfillRequest], str]
    #: Printed when no symbol has stored input.
    nothing_stored: str
    #: Adds the service's own flags to ``mds backfill``.
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    #: Those flags as the configuration keys they override.
    overrides: Callable[[argparse.Namespace], list[Override]] | None = None


def _resolve(target: str) -> Any:
    """The object ``"package.module:name"`` names, importing its module."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def catch_up_backfill(
    service: type[PerSymbolService[Any]] | str, *, what: str, rows: str, counter: str
) -> Backfill:
    """The backfill of a per-symbol service: ``catch_up()``, then a summary line
    ``"{what}: 2 symbols, 1,234 new {rows} computed in 0.1 s"`` counted from ``counter``
    (the service's counter of input rows processed, without ``_total``).

    ``service`` is the class, or ``"module:Class"``, imported only when the backfill lists
    its stored symbols (so naming it in the catalog does not import it)."""

    def stored_symbols(engine: Any) -> list[str]:
        cls = _resolve(service) if isinstance(service, str) else service
        symbols: list[str] = cls.stored_symbols(engine)
        return symbols

    def run(request: BackfillRequest) -> str:
        request.service.catch_up()
        done = sum(
            sample.value
            for metric in request.registry.collect()
            if metric.name == counter
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
        noun = "symbol" if len(request.symbols) == 1 else "symbols"
        return (
            f"{what}: {len(request.symbols)} {noun}, {int(done):,} new {rows} computed "
            f"in {time.monotonic() - request.started:.1f} s"
        )

    return Backfill(
        stored_symbols=stored_symbols,
        run=run,
        nothing_stored=f"{what}: no {rows} stored: nothing to backfill",
    )


@dataclass(frozen=True, kw_only=True)
class ServiceEntry:
    service_name: str  # what the service calls itself: metric label, health key
    factory: Factory
    defaults: ServiceConfig = field(default_factory=ServiceConfig)
    #: A frozen dataclass of the service's own keys, or None.
    options: type | None = None
    #: Run one iteration before the other services start (the demo feed's backfill).
    warm_up: bool = False
    #: Symbols this service brings when enabled and none are configured, or None.
    default_symbols: DefaultSymbols | None = None
    #: How ``mds backfill`` builds its stored history, or None (nothing to backfill).
    backfill: Backfill | None = None


# -- candles -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CandleOptions:
    """Keys of ``[services.candles]`` beyond the common ones."""

    #: Where the daily candle opens: "HH:MM ZONE" ("17:00 America/New_York" for forex).
    day_start: str = "00:00 UTC"
    #: Which price the candles are built from: mid, bid or ask.
    price_basis: str = "mid"
    #: How long after a bucket's end it is first written (late ticks update it later).
    lateness_seconds: float = 2.0
    #: Rebuild stored candles made with another basis or day start instead of failing.
    rebuild: bool = False
    #: Symbols built in parallel.
    workers: int = 1

    def __post_init__(self) -> None:
        try:
            parse_day_start(self.day_start)
        except ValueError as exc:
            raise ConfigError("day_start", str(exc)) from None
        if self.price_basis not in PRICE_BASES:
            valid = ", ".join(PRICE_BASES)
            raise ConfigError("price_basis", f"must be one of {valid}; got {self.price_basis!r}")
        if not (math.isfinite(self.lateness_seconds) and self.lateness_seconds >= 0):
            raise ConfigError("lateness_seconds", f"must be >= 0, got {self.lateness_seconds:g}")
        if not 1 <= self.workers <= 64:
            raise ConfigError("workers", f"must be 1..64, got {self.workers}")


def _candles(ctx: ServiceContext) -> ThreadedBackgroundService:
    from market_data_services.aggregators.candles import (  # noqa: PLC0415 - built on use
        AggregatorService,
    )

    options: CandleOptions = ctx.options
    return AggregatorService(
        ctx.engine,
        day_start=options.day_start,
        price_basis=options.price_basis,
        lateness_seconds=options.lateness_seconds,
        rebuild=options.rebuild,
        workers=options.workers,
        ownership=ctx.ownership(),
        **ctx.base_kwargs(),
    )


#: flag attribute -> (configuration key, flag as written)
_CANDLE_FLAGS = {
    "price_basis": ("services.candles.price_basis", "--price-basis"),
    "day_start": ("services.candles.day_start", "--day-start"),
    "lateness": ("services.candles.lateness_seconds", "--lateness"),
    "workers": ("services.candles.workers", "--workers"),
}


def _candle_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = CandleOptions()  # --help shows the configuration's defaults
    parser.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="first moment to rebuild (ISO-8601 or epoch ms; default: the first tick)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        metavar="TIME",
        help="end of the window, exclusive (default: the last tick)",
    )
    parser.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help="zone of --from/--to when they carry no offset (default: UTC)",
    )
    parser.add_argument(
        "--price-basis",
        choices=PRICE_BASES,
        help=f"price of a tick (default: services.candles.price_basis, {defaults.price_basis})",
    )
    parser.add_argument(
        "--day-start",
        metavar="'HH:MM ZONE'",
        help="when the daily candle opens, e.g. '17:00 America/New_York' "
        f"(default: services.candles.day_start, {defaults.day_start})",
    )
    parser.add_argument(
        "--lateness",
        metavar="SECONDS",
        help="a bucket is built this long after it ends "
        f"(default: services.candles.lateness_seconds, {defaults.lateness_seconds:g})",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        help=f"symbols built in parallel (default: services.candles.workers, {defaults.workers})",
    )


def _candle_overrides(args: argparse.Namespace) -> list[Override]:
    return [
        Override(key, getattr(args, attr), flag)
        for attr, (key, flag) in _CANDLE_FLAGS.items()
        if getattr(args, attr) is not None
    ]


def _stored_tick_symbols(engine: Any) -> list[str]:
    from market_data_services.aggregators.candles import (  # noqa: PLC0415 - built on use
        all_stored_symbols,
    )

    return all_stored_symbols(engine)


def _backfill_candles(request: BackfillRequest) -> str:
    args, options = request.args, request.options
    zone = parse_zone(args.tz)
    start = None if args.start is None else parse_timestamp_ms(args.start, zone)
    end = None if args.end is None else parse_timestamp_ms(args.end, zone)
    service: AggregatorService = request.service
    symbols = request.symbols
    bar = request.progress_bar(len(symbols), "symbols")
    lock = threading.Lock()  # the callback runs on the worker threads
    finished: set[str] = set()  # guarded by lock

    def progress(event: BackfillProgress) -> None:
        with lock:
            if event.steps_done == event.steps_total:
                finished.add(event.symbol)
            bar.update(
                len(finished),
                f"{event.symbol} {format_ms(event.window_start_ms)[:10]} "
                f"({event.steps_done}/{event.steps_total})",
            )

    try:
        report = service.backfill(start_ms=start, end_ms=end, progress=progress)
    finally:
        bar.close()
    elapsed = time.monotonic() - request.started
    per_tf = ", ".join(f"{tf} {report.candles[tf]:,}" for tf in TIMEFRAMES)
    noun = "symbol" if len(symbols) == 1 else "symbols"
    return (
        f"{len(symbols)} {noun}, {report.minutes_built:,} minutes scanned, "
        f"{report.candles_written:,} candles written ({per_tf}) in {elapsed:.1f} s; "
        f"price basis {options.price_basis}, day start {parse_day_start(options.day_start)}"
    )


# -- order books ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DomOptions:
    """Keys of ``[services.dom]`` beyond the common ones."""

    #: Snapshots read, computed and written per transaction (the service's
    #: DEFAULT_BATCH_SIZE, written out so that the configuration does not import the service;
    #: tests/app/test_catalog.py checks they agree).
    batch_size: int = 5000

    def __post_init__(self) -> None:
        if not 2 <= self.batch_size <= 1_000_000:
            raise ConfigError("batch_size", f"must be 2..1000000, got {self.batch_size}")


def _dom(ctx: ServiceContext) -> ThreadedBackgroundService:
    from market_data_services.aggregators.dom import (  # noqa: PLC0415 - built on use
        DOMAggregatorService,
    )

    options: DomOptions = ctx.options
    return DOMAggregatorService(
        ctx.engine, batch_size=options.batch_size, ownership=ctx.ownership(), **ctx.base_kwargs()
    )


# -- sentiment -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SentimentOptions:
    """Keys of ``[services.sentiment]`` beyond the common ones (shares are 0..1)."""

    #: The window of change_window, window_min and window_max.
    history_window_seconds: float = 3600.0
    #: EMA span in readings (alpha = 2 / (span + 1)), unless ema_alpha is set.
    ema_span: float = 10.0
    ema_alpha: float | None = None
    #: The contrarian signal: -1 from long_enter until below long_exit; +1 from
    #: short_enter until above short_exit.
    long_enter: float = 0.70
    long_exit: float = 0.65
    short_enter: float = 0.30
    short_exit: float = 0.35
    #: Read only this source (default: every source, averaged at equal times).
    source: str | None = None
    #: Bound of each symbol's history deque (the service's DEFAULT_HISTORY_MAX_READINGS,
    #: written out as DomOptions.batch_size is).
    history_max_readings: int = 10_000
    #: Recompute stored metrics made with other settings instead of failing.
    rebuild: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.history_window_seconds) and self.history_window_seconds > 0):
            raise ConfigError(
                "history_window_seconds", f"must be > 0, got {self.history_window_seconds:g}"
            )
        if not (math.isfinite(self.ema_span) and self.ema_span >= 1):
            raise ConfigError("ema_span", f"must be >= 1 (readings), got {self.ema_span:g}")
        if self.ema_alpha is not None and not 0 < self.ema_alpha <= 1:
            raise ConfigError("ema_alpha", f"must satisfy 0 < x <= 1, got {self.ema_alpha:g}")
        try:
            self.thresholds()
        except ValueError as exc:
            raise ConfigError("long_enter", str(exc)) from None
        if self.history_max_readings < 1:
            raise ConfigError(
                "history_max_readings", f"must be >= 1, got {self.history_max_readings}"
            )

    def thresholds(self) -> ContrarianThresholds:
        return ContrarianThresholds(
            long_enter=self.long_enter,
            long_exit=self.long_exit,
            short_enter=self.short_enter,
            short_exit=self.short_exit,
        )

    def service_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``SentimentAggregatorService`` these keys set."""
        return {
            "history_window_seconds": self.history_window_seconds,
            "thresholds": self.thresholds(),
            "ema_span": self.ema_span,
            "ema_alpha": self.ema_alpha,
            "source": self.source,
            "history_max_readings": self.history_max_readings,
            "rebuild": self.rebuild,
        }


def _sentiment(ctx: ServiceContext) -> ThreadedBackgroundService:
    from market_data_services.aggregators.sentiment import (  # noqa: PLC0415 - built on use
        SentimentAggregatorService,
    )

    options: SentimentOptions = ctx.options
    return SentimentAggregatorService(
        ctx.engine, **options.service_kwargs(), ownership=ctx.ownership(), **ctx.base_kwargs()
    )


# -- retention -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RetentionOptions:
    """Keys of ``[services.retention]``: per table, how old its rows may grow (seconds;
    unset keeps them for ever). Raw rows go only once aggregated."""

    ticks_drop_after_seconds: float | None = None
    dom_snapshots_drop_after_seconds: float | None = None
    sentiment_readings_drop_after_seconds: float | None = None
    candles_1m_drop_after_seconds: float | None = None
    #: Rows per delete transaction.
    batch_size: int = RETENTION_BATCH_SIZE

    def __post_init__(self) -> None:
        for table, seconds in self.policies().items():
            try:
                check_policies({table: seconds})
            except ValueError as exc:
                raise ConfigError(f"{table}_drop_after_seconds", str(exc)) from None
        if not 1 <= self.batch_size <= 1_000_000:
            raise ConfigError("batch_size", f"must be 1..1000000, got {self.batch_size}")

    def policies(self) -> dict[str, float]:
        """Table -> seconds, for the tables with a retention."""
        found = {
            "ticks": self.ticks_drop_after_seconds,
            "dom_snapshots": self.dom_snapshots_drop_after_seconds,
            "sentiment_readings": self.sentiment_readings_drop_after_seconds,
            "candles_1m": self.candles_1m_drop_after_seconds,
        }
        return {table: seconds for table, seconds in found.items() if seconds is not None}


def _retention(ctx: ServiceContext) -> ThreadedBackgroundService:
    from market_data_services.aggregators.retention import (  # noqa: PLC0415 - built on use
        RetentionService,
    )

    options: RetentionOptions = ctx.options
    return RetentionService(
        ctx.engine,
        drop_after_seconds=options.policies(),
        batch_size=options.batch_size,
        **ctx.base_kwargs(),
    )


# -- the demo feed -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """Keys of ``[services.demo_feed]`` beyond the common ones."""

    #: Sample seconds replayed per wall-clock second.
    speed: float = 1.0
    #: Wall-clock seconds of data written, stamped in the recent past, at start.
    backfill_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and 0 < self.speed <= 100_000):
            raise ConfigError("speed", f"must satisfy 0 < speed <= 100000, got {self.speed:g}")
        if not (math.isfinite(self.backfill_seconds) and 0 <= self.backfill_seconds <= 86_400):
            raise ConfigError(
                "backfill_seconds", f"must be 0..86400, got {self.backfill_seconds:g}"
            )


def _demo_feed(ctx: ServiceContext) -> ThreadedBackgroundService:
    from market_data_services.demo import DemoFeedService  # noqa: PLC0415 - built on use

    options: DemoOptions = ctx.options
    return DemoFeedService(
        ctx.engine,
        speed=options.speed,
        backfill_seconds=options.backfill_seconds,
        **ctx.base_kwargs(),
    )


SERVICES: dict[str, ServiceEntry] = {
    "candles": ServiceEntry(
        service_name="AggregatorService",
        factory=_candles,
        defaults=ServiceConfig(interval_seconds=60.0, stop_timeout_seconds=10.0),
        options=CandleOptions,
        backfill=Backfill(
            stored_symbols=_stored_tick_symbols,
            run=_backfill_candles,
            nothing_stored="no ticks stored: nothing to backfill "
            "(load some with `mds ingest ticks`)",
            add_arguments=_candle_arguments,
            overrides=_candle_overrides,
        ),
    ),
    "dom": ServiceEntry(
        service_name="DOMAggregatorService",
        factory=_dom,
        defaults=ServiceConfig(interval_seconds=5.0, stop_timeout_seconds=10.0),
        options=DomOptions,
        backfill=catch_up_backfill(
            "market_data_services.aggregators.dom:DOMAggregatorService",
            what="order books",
            rows="snapshots",
            counter="mds_dom_snapshots_processed",
        ),
    ),
    "sentiment": ServiceEntry(
        service_name="SentimentAggregatorService",
        factory=_sentiment,
        defaults=ServiceConfig(interval_seconds=30.0, stop_timeout_seconds=10.0),
        options=SentimentOptions,
        backfill=catch_up_backfill(
            "market_data_services.aggregators.sentiment:SentimentAggregatorService",
            what="sentiment",
            rows="readings",
            counter="mds_sentiment_readings_processed",
        ),
    ),
    # Off by default: deleting is for ever, so a user chooses it, table by table.
    "retention": ServiceEntry(
        service_name="RetentionService",
        factory=_retention,
        defaults=ServiceConfig(enabled=False, interval_seconds=300.0, stop_timeout_seconds=10.0),
        options=RetentionOptions,
    ),
    "demo_feed": ServiceEntry(
        service_name="DemoFeedService",
        factory=_demo_feed,
        defaults=ServiceConfig(enabled=False, interval_seconds=1.0, stop_timeout_seconds=5.0),
        options=DemoOptions,
        warm_up=True,
        # With --demo, each service works on the sample pairs it has data for (no candles
        # for the book stream's symbol, no books for the tick pairs).
        default_symbols=DefaultSymbols(symbols=DEMO_SYMBOLS, per_service=DEMO_SERVICE_SYMBOLS),
    ),
}

#: The entry-point group through which an installed package adds services to the catalog.
PLUGIN_GROUP = "market_data_services.services"


class PluginError(ConfigError):
    """A service plugin could not be loaded, or clashes with a service of the catalog.

    A configuration error: commands report it as one (exit status 2)."""

    def __init__(self, problem: str) -> None:
        super().__init__("", problem)


@functools.cache
def catalog() -> dict[str, ServiceEntry]:
    """The built-in ``SERVICES`` and the services of installed plugins, built once.

    A plugin is an entry point of the group ``market_data_services.services`` whose name
    is the service's key (its ``[services.<name>]`` section) and whose object is its
    ``ServiceEntry``. They load here, before any configuration is read, because the
    configuration's keys come from the catalog. Treat the result as read-only.
    """
    return {**SERVICES, **_plugins(SERVICES)}


def _plugins(builtin: dict[str, ServiceEntry]) -> dict[str, ServiceEntry]:
    found: dict[str, ServiceEntry] = {}
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        where = f"plugin {point.name!r} ({point.value})"
        if point.name in builtin or point.name in found:
            raise PluginError(f"{where}: a service named {point.name!r} exists already")
        try:
            entry = point.load()
        except Exception as exc:
            raise PluginError(f"{where}: cannot load: {type(exc).__name__}: {exc}") from exc
        if not isinstance(entry, ServiceEntry):
            raise PluginError(
                f"{where}: is a {type(entry).__name__}, not a market_data_services ServiceEntry"
            )
        found[point.name] = entry
    return found


__all__ = [
    "PLUGIN_GROUP",
    "SERVICES",
    "Backfill",
    "BackfillRequest",
    "CandleOptions",
    "DemoOptions",
    "DomOptions",
    "PluginError",
    "RetentionOptions",
    "SentimentOptions",
    "ServiceContext",
    "ServiceEntry",
    "catalog",
    "catch_up_backfill",
]
