"""The packaged samples' files and symbols, and the symbols each service works on with
``--demo``.

Plain data, apart from the feed: the service catalog, which every command reads, names
these symbols, and should not import the feed and the ingestion it writes through.
"""

from __future__ import annotations

#: The pairs the packaged samples hold, and their files.
TICK_SAMPLES: dict[str, str] = {
    "EUR/USD": "ticks_fxcm_eurusd.csv.gz",
    "NZD/USD": "ticks_fxcm_nzdusd.csv.gz",
}
#: The packaged order-book stream and the symbol it holds.
BOOK_SAMPLES: dict[str, str] = {"XRPUSDT": "books_bybit_xrpusdt.data.gz"}
#: The packaged sentiment export, and the symbols of it the demo replays.
SENTIMENT_SAMPLE = "sentiment_ig.csv.gz"
SENTIMENT_SYMBOLS: tuple[str, ...] = ("EUR/USD", "NZD/USD")
#: The pairs the packaged tick samples hold, and the book stream's symbol.
DEMO_SYMBOLS: tuple[str, ...] = (*TICK_SAMPLES, *BOOK_SAMPLES)
#: With --demo, the symbols each service of the catalog works on: those it has data for.
DEMO_SERVICE_SYMBOLS: dict[str, tuple[str, ...]] = {
    "candles": tuple(TICK_SAMPLES),
    "dom": tuple(BOOK_SAMPLES),
    "sentiment": SENTIMENT_SYMBOLS,
}

__all__ = [
    "BOOK_SAMPLES",
    "DEMO_SERVICE_SYMBOLS",
    "DEMO_SYMBOLS",
    "SENTIMENT_SAMPLE",
    "SENTIMENT_SYMBOLS",
    "TICK_SAMPLES",
]
