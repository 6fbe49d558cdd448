"""Sentiment files: one module per layout (``plain`` CSV, ``ig`` exports), ``sniff.py``
to tell a file's layout and read it, ``common.py`` for what they share. Parsing yields
``RawReadings``: numpy columns plus the rows that could not be parsed, each with its file
and line.
"""

from market_data_services.ingest.layouts.sentiment.common import (
    SENTIMENT_FILE_SUFFIXES,
    NotASentimentFileError,
    RawReadings,
    SentimentFile,
    find_sentiment_files,
)
from market_data_services.ingest.layouts.sentiment.ig import IgSentiment, market_symbol
from market_data_services.ingest.layouts.sentiment.plain import PlainSentiment
from market_data_services.ingest.layouts.sentiment.sniff import (
    LAYOUTS,
    inspect_sentiment_file,
    read_readings,
)

__all__ = [
    "LAYOUTS",
    "SENTIMENT_FILE_SUFFIXES",
    "IgSentiment",
    "NotASentimentFileError",
    "PlainSentiment",
    "RawReadings",
    "SentimentFile",
    "find_sentiment_files",
    "inspect_sentiment_file",
    "market_symbol",
    "read_readings",
]
