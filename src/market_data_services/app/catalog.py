"""The service catalog: every service ``mds run`` can start, one entry each.

An entry names the service's config section (``[services.<name>]``), its defaults, its
own keys (a frozen dataclass whose fields become keys of that section), the symbols it
brings when none are configured (the demo feed's sample pairs), and a factory that builds
it from a :class:`ServiceContext`. Adding a service is adding one entry to ``SERVICES``;
the configuration (``ConfigSource`` is given this catalog), ``mds config show``, the
environment variables, the health endpoint and shutdown pick it up from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from market_data_services.aggregators.candles import PRICE_BASES, AggregatorService
from market_data_services.aggregators.dom import DEFAULT_BATCH_SIZE as DOM_BATCH_SIZE
from market_data_services.aggregators.dom import DOMAggregatorService
from market_data_services.aggregators.sentiment import (
    DEFAULT_HISTORY_MAX_READINGS,
    ContrarianThresholds,
    SentimentAggregatorService,
)
from market_data_services.app.config.model import (
    BreakerConfig,
    ConfigError,
    DefaultSymbols,
    ServiceConfig,
)
from market_data_services.demo import DEMO_SERVICE_SYMBOLS, DEMO_SYMBOLS, DemoFeedService
from market_data_services.runtime import CircuitBreaker, ThreadedBackgroundService
from market_data_services.runtime.service import FailureClassifier
from market_data_services.timeutil import parse_day_start


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

    @property
    def options(self) -> Any:
        return self.config.options

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
    options: CandleOptions = ctx.options
    return AggregatorService(
        ctx.engine,
        day_start=options.day_start,
        price_basis=options.price_basis,
        lateness_seconds=options.lateness_seconds,
        rebuild=options.rebuild,
        workers=options.workers,
        **ctx.base_kwargs(),
    )


# -- order books ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DomOptions:
    """Keys of ``[services.dom]`` beyond the common ones."""

    #: Snapshots read, computed and written per transaction.
    batch_size: int = DOM_BATCH_SIZE

    def __post_init__(self) -> None:
        if not 2 <= self.batch_size <= 1_000_000:
            raise ConfigError("batch_size", f"must be 2..1000000, got {self.batch_size}")


def _dom(ctx: ServiceContext) -> ThreadedBackgroundService:
    options: DomOptions = ctx.options
    return DOMAggregatorService(ctx.engine, batch_size=options.batch_size, **ctx.base_kwargs())


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
    #: Bound of each symbol's history deque.
    history_max_readings: int = DEFAULT_HISTORY_MAX_READINGS
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
    options: SentimentOptions = ctx.options
    return SentimentAggregatorService(ctx.engine, **options.service_kwargs(), **ctx.base_kwargs())


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
    ),
    "dom": ServiceEntry(
        service_name="DOMAggregatorService",
        factory=_dom,
        defaults=ServiceConfig(interval_seconds=5.0, stop_timeout_seconds=10.0),
        options=DomOptions,
    ),
    "sentiment": ServiceEntry(
        service_name="SentimentAggregatorService",
        factory=_sentiment,
        defaults=ServiceConfig(interval_seconds=30.0, stop_timeout_seconds=10.0),
        options=SentimentOptions,
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

__all__ = [
    "SERVICES",
    "CandleOptions",
    "DemoOptions",
    "DomOptions",
    "SentimentOptions",
    "ServiceContext",
    "ServiceEntry",
]
