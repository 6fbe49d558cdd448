"""The vendors' file layouts, registered: telling a file's layout from its head, and
parsing it.

``ticks`` (plain CSV, LEAN), ``books`` (our JSON lines, Tardis, Bybit, Binance) and
``sentiment`` (plain CSV, IG exports) each find their files, inspect them and parse them
into numpy columns plus the rows that could not be parsed, with file and line. Every
layout is a ``Layout`` object in ``LAYOUTS`` (``base.py``); adding one is a module with
its class plus one ``register`` line here, or, from outside the package, one entry point
of the group ``market_data_services.layouts``.
"""

from market_data_services.ingest.layouts import books, sentiment, ticks
from market_data_services.ingest.layouts.base import (
    KINDS,
    LAYOUTS,
    PLUGIN_GROUP,
    Layout,
    LayoutPluginError,
    ReadOptions,
    layout_names,
    layouts,
    load_plugins,
    register,
)
from market_data_services.ingest.layouts.books.binance import BinanceBooks
from market_data_services.ingest.layouts.books.bybit import BybitBooks
from market_data_services.ingest.layouts.books.jsonl import JsonlBooks
from market_data_services.ingest.layouts.books.tardis import TardisBooks
from market_data_services.ingest.layouts.sentiment import IgSentiment, PlainSentiment
from market_data_services.ingest.layouts.ticks.lean import LeanTicks
from market_data_services.ingest.layouts.ticks.plain import PlainTicks

# One line a layout; within a kind, the first whose sniff() accepts a file reads it.
register(PlainTicks())
register(LeanTicks())
register(BybitBooks())  # before jsonl: both are JSON lines
register(JsonlBooks())
register(TardisBooks())
register(BinanceBooks())
register(PlainSentiment())
register(IgSentiment())

__all__ = [
    "KINDS",
    "LAYOUTS",
    "PLUGIN_GROUP",
    "Layout",
    "LayoutPluginError",
    "ReadOptions",
    "books",
    "layout_names",
    "layouts",
    "load_plugins",
    "register",
    "sentiment",
    "ticks",
]
