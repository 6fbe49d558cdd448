"""The demo feed: packaged sample data replayed into the database as if it arrived now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_services._lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_services.demo.feed import (
        DemoFeedService,
        TickTrack,
        Track,
        packaged_tracks,
        read_tick_sample,
    )
    from market_data_services.demo.symbols import DEMO_SERVICE_SYMBOLS, DEMO_SYMBOLS, TICK_SAMPLES

#: public name -> the module it comes from, imported on first use (PEP 562): the catalog
#: reads the sample symbols (demo.symbols) at every command, the feed only mds run --demo needs.
_EXPORTS = {
    "DEMO_SERVICE_SYMBOLS": "market_data_services.demo.symbols",
    "DEMO_SYMBOLS": "market_data_services.demo.symbols",
    "TICK_SAMPLES": "market_data_services.demo.symbols",
    "DemoFeedService": "market_data_services.demo.feed",
    "TickTrack": "market_data_services.demo.feed",
    "Track": "market_data_services.demo.feed",
    "packaged_tracks": "market_data_services.demo.feed",
    "read_tick_sample": "market_data_services.demo.feed",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "DEMO_SERVICE_SYMBOLS",
    "DEMO_SYMBOLS",
    "TICK_SAMPLES",
    "DemoFeedService",
    "TickTrack",
    "Track",
    "packaged_tracks",
    "read_tick_sample",
]
