"""Renamed ``market_data_services.app.catalog`` (issue 11); this module re-exports it so
that imports written before still work."""

from market_data_services.app.catalog import (
    SERVICES,
    CandleOptions,
    DemoOptions,
    DomOptions,
    SentimentOptions,
    ServiceContext,
    ServiceEntry,
)

__all__ = [
    "SERVICES",
    "CandleOptions",
    "DemoOptions",
    "DomOptions",
    "SentimentOptions",
    "ServiceContext",
    "ServiceEntry",
]
