"""Raw data in: ticks, order-book snapshots and sentiment readings, from files or a feed.

::

    from market_data_services.ingest import ingest_ticks, write_ticks

    report = ingest_ticks(engine, "ticks/", symbol="EUR/USD", tz="UTC-05:00")
    print(report.summary())

Every row is checked; a bad one is rejected with its file, line and reason and counted,
and the good rows beside it are kept (``IngestReport``). ``layouts/`` reads the vendors'
file layouts; ``pipeline.py`` holds what the three kinds share.
"""

from market_data_services.ingest.dom import (
    BookSnapshot,
    NotABookFileError,
    ingest_dom,
    inspect_dom_files,
    write_dom,
)
from market_data_services.ingest.files import (
    BadFileError,
    ImplausibleTimeError,
    ReadLimits,
    WrongFileKindError,
)
from market_data_services.ingest.pipeline import IngestProgress, IngestReport, Rejection
from market_data_services.ingest.sentiment import (
    NotASentimentFileError,
    SentimentReading,
    ingest_sentiment,
    inspect_sentiment_files,
    write_sentiment,
)
from market_data_services.ingest.ticks import (
    NotATickFileError,
    Tick,
    ingest_ticks,
    inspect_tick_files,
    write_ticks,
)

__all__ = [
    "BadFileError",
    "BookSnapshot",
    "ImplausibleTimeError",
    "IngestProgress",
    "IngestReport",
    "NotABookFileError",
    "NotASentimentFileError",
    "NotATickFileError",
    "ReadLimits",
    "Rejection",
    "SentimentReading",
    "Tick",
    "WrongFileKindError",
    "ingest_dom",
    "ingest_sentiment",
    "ingest_ticks",
    "inspect_dom_files",
    "inspect_sentiment_files",
    "inspect_tick_files",
    "write_dom",
    "write_sentiment",
    "write_ticks",
]
