"""Where a service's symbols come from: a fixed list, or configuration behind a TTL cache."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence

logger = logging.getLogger(__name__)

SymbolProvider = Callable[[], Iterable[str]]

#: The specification's cache lifetime: configuration is read at most every 5 minutes.
DEFAULT_SYMBOL_TTL_SECONDS = 300.0


def symbols_from_environment() -> list[str]:
    """``MDS_SYMBOLS``, comma-separated (``EUR/USD,GBP/USD``); empty when unset."""
    return [s for s in (part.strip() for part in os.environ.get("MDS_SYMBOLS", "").split(",")) if s]


def normalise(symbols: Iterable[str], source: str) -> list[str]:
    """Strip, reject blanks and non-strings, drop repeats (first one wins, order kept)."""
    seen: dict[str, None] = {}
    for symbol in symbols:
        if not isinstance(symbol, str) or not symbol.strip():
            raise ValueError(f"{source}: symbol must be a non-empty string, got {symbol!r}")
        seen.setdefault(symbol.strip(), None)
    return list(seen)


class SymbolSource:
    """The symbols a service works on.

    Given a list, it returns that list. Otherwise it asks ``provider`` (configuration)
    and keeps the answer for ``ttl_seconds``; when a refresh fails, the last good answer
    is kept and the failure logged, so a broken config file does not stop the services.
    """

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        provider: SymbolProvider | None = None,
        ttl_seconds: float = DEFAULT_SYMBOL_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError(f"symbol_cache_ttl_seconds must be >= 0, got {ttl_seconds}")
        self._fixed = None if symbols is None else normalise(symbols, "symbols")
        self._provider = provider or symbols_from_environment
        self._ttl = ttl_seconds
        self._clock = clock
        # Guarded by _lock.
        self._lock = threading.Lock()
        self._cached: list[str] | None = None
        self._cached_at = 0.0

    @property
    def configured(self) -> bool:
        """Whether the symbols were given to the constructor."""
        return self._fixed is not None

    def get(self) -> list[str]:
        if self._fixed is not None:
            return self._fixed
        now = self._clock()
        with self._lock:
            if self._cached is not None and now - self._cached_at < self._ttl:
                return self._cached
            stale = self._cached
        try:
            fresh = normalise(self._provider(), "symbol configuration")
        except Exception:
            if stale is None:
                raise
            logger.exception("symbols.refresh_failed")
            fresh = stale
        with self._lock:
            self._cached, self._cached_at = fresh, now
        return fresh
