"""What the derived-data services share: ``PerSymbolService``, the per-symbol engine.

A derived-data service reads raw rows of one table per symbol and writes derived rows.
The engine owns the rest, as OTel's ``BatchProcessor`` owns queueing and shutdown: the
iteration (work per symbol until ``interval_seconds`` have passed, one child span per
symbol, one symbol's failure not stopping the others), ``catch_up()`` (a backfill of the
stored history through ``run_once()``), the labelled metric children per symbol, the
progress per symbol in ``service_progress``, the settings check (stored vs configured,
with ``rebuild``) and the "stored symbols" read. A service says only what one symbol's
work is (``_work_on``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import Connection, Table, delete
from sqlalchemy.engine import Engine

from market_data_services.market.symbols import check_symbol
from market_data_services.runtime import IterationOutcome, ThreadedBackgroundService
from market_data_services.storage.arrival import arrival_horizon
from market_data_services.storage.engine import begin_write
from market_data_services.storage.progress import (
    forget_progress,
    read_progress,
    read_settings,
    write_progress,
    write_settings,
)
from market_data_services.storage.reads import stored_symbols_of

logger = logging.getLogger(__name__)

#: The labelled metric children of one symbol, as a service resolves them.
M = TypeVar("M")


class SettingsMismatchError(RuntimeError):
    """The stored results were computed with other settings (candles: price basis or day
    start; sentiment: window, EMA, thresholds or source). Configure the same, or rebuild
    them (``mds backfill --rebuild``; ``rebuild=True``)."""


class PerSymbolService(ThreadedBackgroundService, Generic[M]):
    """A service that turns each symbol's rows of ``source_table`` into derived rows.

    Subclasses set ``SERVICE_NAME``, ``source_table`` and ``log_event_prefix``, and
    implement ``_work_on(symbol, deadline)`` (work until done or until ``deadline``, a
    reading of ``self._clock``; None means until done) and ``_new_symbol_metrics``. A
    service whose results depend on settings sets ``settings_key``, ``derived_table`` and
    ``derived_label`` and implements ``settings_text()``.
    """

    SERVICE_NAME: ClassVar[str]
    #: The raw table the service reads; its symbols are what a backfill works on.
    source_table: ClassVar[Table]
    #: The first word of the service's log events (``dom`` -> ``dom.symbol_failed``).
    log_event_prefix: ClassVar[str]
    #: The ``settings`` key recording what the stored results were computed with, or None.
    settings_key: ClassVar[str | None] = None
    #: The table a rebuild empties, and how the mismatch message names its rows.
    derived_table: ClassVar[Table | None] = None
    derived_label: ClassVar[str] = "derived rows"
    #: The logger of the service's events (a subclass may keep its package's name).
    service_logger: ClassVar[logging.Logger] = logger

    def __init__(
        self,
        engine: Engine,
        symbols: Sequence[str] | None = None,
        interval_seconds: float = 5.0,
        *,
        rebuild: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            engine,
            symbols,
            interval_seconds,
            enable_circuit_breaker=kwargs.pop("enable_circuit_breaker", True),
            **kwargs,
        )
        # These three are owned by the thread running iterations (the loop, or
        # run_once/catch_up's caller).
        self._per_symbol: dict[str, M] = {}
        self._rebuild = bool(rebuild)
        self._prepared = False
        # Set and read on the thread calling catch_up (run_once refuses while the loop runs).
        self._catch_up: list[str] | None = None
        self._catch_up_error: Exception | None = None
        # The iteration's arrival horizon, read at its first use; owned by the thread
        # running iterations.
        self._horizon: int | None = None

    @property
    def service_name(self) -> str:
        return self.SERVICE_NAME

    # -- what a service implements -----------------------------------------------------------

    def _work_on(self, symbol: str, deadline: float | None) -> None:
        raise NotImplementedError

    def _new_symbol_metrics(self, symbol: str) -> M:
        raise NotImplementedError

    def settings_text(self) -> str:
        """What the stored results depend on, as recorded in the ``settings`` table."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Called before the first symbol's work, until it returns once: a service that
        keeps its results outside the package's schema creates its tables here."""

    def _symbol_failed(self, symbol: str) -> None:
        """Called after ``symbol``'s work raised: drop any state that may be ahead."""

    def _symbol_released(self, symbol: str) -> None:
        # Another instance may move the symbol's stored progress on: start again from it.
        self._symbol_failed(symbol)

    def _settings_reset(self) -> None:
        """Called after the settings were (re)recorded: drop state of the old settings."""

    # -- the engine --------------------------------------------------------------------------

    @classmethod
    def stored_symbols(cls, engine: Engine) -> list[str]:
        """Every symbol with rows in ``source_table``, for backfills over the whole database."""
        with engine.connect() as connection:
            return stored_symbols_of(connection, cls.source_table)

    def _process_iteration(self) -> None:
        self._horizon = None
        request = self._catch_up
        try:
            if not self._prepared:
                self._prepare()
                self._prepared = True
            if self.settings_key is not None:
                self._ensure_settings()
            if request is not None:
                self._for_each_symbol(request, None)
                return
        except Exception as exc:
            if request is not None:
                self._catch_up_error = exc
            raise
        deadline = self._clock() + self.interval_seconds
        self._for_each_symbol(self.owned_symbols(), deadline)

    def catch_up(self, symbols: Sequence[str] | None = None) -> None:
        """Work until every stored row of ``symbols`` (default: the service's) is done,
        however long it takes: the backfill of stored history.

        Runs one iteration through ``run_once()`` (so it is counted, traced and guarded by
        the breaker) on the caller's thread; raises if the loop is running, if the
        iteration failed (its error) or if the breaker is open.
        """
        names = self.get_symbols() if symbols is None else [check_symbol(s) for s in symbols]
        self._catch_up, self._catch_up_error = names, None
        try:
            outcome = self.run_once()
        finally:
            self._catch_up = None
        if self._catch_up_error is not None:
            raise self._catch_up_error
        if outcome is IterationOutcome.SKIPPED:
            # A catch-up the open breaker skipped did nothing: say so instead of returning.
            raise RuntimeError(
                f"{self.service_name}: the circuit breaker is open, nothing was done; "
                f"reset_circuit_breaker() to try now"
            )

    def _for_each_symbol(self, symbols: Sequence[str], deadline: float | None) -> None:
        failures: list[Exception] = []
        for symbol in symbols:
            if self.stop_requested():
                break
            try:
                with self.symbol_span(symbol):
                    self._work_on(symbol, deadline)
            except Exception as exc:
                self._symbol_failed(symbol)
                failures.append(exc)
                self.service_logger.warning(
                    f"{self.log_event_prefix}.symbol_failed",
                    extra={
                        "service": self.service_name,
                        "symbol": symbol,
                        "error_type": type(exc).__name__,
                    },
                )
        if failures:
            raise failures[0]

    def _past(self, deadline: float | None) -> bool:
        """Whether a symbol's work should yield now: stop asked, or its time is up."""
        return self.stop_requested() or (deadline is not None and self._clock() >= deadline)

    def _metrics_of(self, symbol: str) -> M:
        found = self._per_symbol.get(symbol)
        if found is None:
            found = self._per_symbol[symbol] = self._new_symbol_metrics(symbol)
        return found

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _source_horizon(self, connection: Connection) -> int:
        """``source_table``'s arrival horizon (``storage/arrival.py``), read once per
        iteration instead of once per symbol: a horizon read earlier is only lower, so
        rows above it are simply left for the next iteration."""
        if self._horizon is None:
            self._horizon = arrival_horizon(connection, self.source_table)
        return self._horizon

    def _read_progress(self, connection: Connection, symbol: str) -> dict[str, int | None]:
        return read_progress(connection, self.SERVICE_NAME, symbol)

    def _write_progress(
        self, connection: Connection, symbol: str, state: Mapping[str, int | None]
    ) -> None:
        write_progress(connection, self.SERVICE_NAME, symbol, state, now_ms=self._now_ms())

    def _ensure_settings(self) -> None:
        """Record the settings; refuse (or, with ``rebuild``, redo everything) when the
        stored results were computed with others, so rows of two settings never mix."""
        key = self.settings_key
        assert key is not None
        wanted = self.settings_text()
        with self.engine.connect() as connection:
            stored = read_settings(connection, [key]).get(key)
        if stored == wanted:
            return
        if stored is not None and not self._rebuild:
            raise SettingsMismatchError(
                f"the {self.derived_label} in this database were computed with {stored}; this "
                f"service is configured with {wanted}. Configure the same, or recompute them "
                f"(mds backfill --rebuild; rebuild=True)"
            )
        with begin_write(self.engine) as connection:
            if stored is not None:
                if self.derived_table is not None:
                    connection.execute(delete(self.derived_table))
                forget_progress(connection, self.SERVICE_NAME)
                self.service_logger.warning(
                    f"{self.log_event_prefix}.rebuild",
                    extra={"service": self.SERVICE_NAME, "previous": stored, "new": wanted},
                )
            write_settings(connection, {key: wanted}, now_ms=self._now_ms())
        self._settings_reset()
        self._rebuild = False


__all__ = ["PerSymbolService", "SettingsMismatchError"]
