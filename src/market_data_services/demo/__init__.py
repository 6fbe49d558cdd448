"""The demo feed: packaged sample data replayed into the database as if it arrived now."""

from market_data_services.demo.feed import (
    DEMO_SERVICE_SYMBOLS,
    DEMO_SYMBOLS,
    TICK_SAMPLES,
    DemoFeedService,
    TickTrack,
    Track,
    packaged_tracks,
    read_tick_sample,
)

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
