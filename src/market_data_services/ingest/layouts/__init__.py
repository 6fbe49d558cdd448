"""The vendors' file layouts: telling a file's layout from its head, and parsing it.

``ticks`` (plain CSV, LEAN), ``books`` (our JSON lines, Tardis, Bybit, Binance) and
``sentiment`` (plain CSV, IG exports) each find their files, inspect them and parse them
into numpy columns plus the rows that could not be parsed, with file and line.
"""

from market_data_services.ingest.layouts import books, sentiment, ticks

__all__ = ["books", "sentiment", "ticks"]
