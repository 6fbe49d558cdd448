"""Import paths of earlier releases keep working after the layout of issue 11.

The names are those each module exported (``__all__``) before ingestion got its own
package; the README showed some of these paths.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from sqlalchemy import Table

EXPORTED_BEFORE = {
    "market_data_services": (
        "AggregatorService CircuitBreaker CircuitBreakerError CircuitBreakerState "
        "DOMAggregatorService IterationOutcome SentimentAggregatorService StateChange "
        "ThreadedBackgroundService WebhookNotifier __version__ "
        # Issue 15: derived data read back.
        "UnknownSymbolError read_candles read_book_metrics read_sentiment iter_candles "
        "iter_book_metrics iter_sentiment"
    ),
    "market_data_services.aggregators": (
        "PRICE_BASES REJECT_REASONS TF_RULES TIMEFRAMES AggregatorService BackfillProgress "
        "BookSnapshot ContrarianThresholds DOMAggregatorService IngestReport NotABookFileError "
        "NotASentimentFileError NotATickFileError PassReport Rejection SentimentAggregatorService "
        "SentimentReading SettingsMismatchError Tick ingest_dom ingest_sentiment ingest_ticks "
        "write_dom write_sentiment write_ticks"
    ),
    "market_data_services.aggregators.ticks": (
        "CHUNK_ROWS DEFAULT_FUTURE_TOLERANCE_SECONDS LAYOUTS NUMBERINGS REJECT_REASONS "
        "TICK_WRITE_LOCK_KEY ImplausibleTimeError IngestProgress IngestReport NotATickFileError "
        "Rejection Tick TickFile check_symbol ingest_ticks inspect_tick_files tick_metrics "
        "write_ticks"
    ),
    "market_data_services.aggregators.dom": (
        "DEFAULT_BATCH_SIZE DOM_WRITE_LOCK_KEY LAYOUTS REJECT_REASONS SERVICE_NAME BookFile "
        "BookSnapshot DOMAggregatorService ImplausibleTimeError NotABookFileError "
        "dom_ingest_metrics ingest_dom inspect_dom_files pack_levels stored_dom_symbols "
        "unpack_levels write_dom"
    ),
    "market_data_services.aggregators.sentiment": (
        "DEFAULT_BATCH_SIZE DEFAULT_HISTORY_MAX_READINGS DEFAULT_SUM_TOLERANCE LAYOUTS "
        "REJECT_REASONS SENTIMENT_WRITE_LOCK_KEY SERVICE_NAME SETTING_KEY ContrarianThresholds "
        "ImplausibleTimeError NotASentimentFileError SentimentAggregatorService SentimentFile "
        "SentimentReading SettingsMismatchError ingest_sentiment inspect_sentiment_files "
        "sentiment_ingest_metrics stored_sentiment_symbols write_sentiment"
    ),
    "market_data_services.aggregators.candles": (
        "PRICE_BASES SERVICE_NAME TF_RULES TIMEFRAMES AggregatorService BackfillProgress "
        "PassReport SettingsMismatchError all_stored_symbols candle_metrics check_price_basis"
    ),
    "market_data_services.app.services": (
        "SERVICES CandleOptions DemoOptions DomOptions SentimentOptions ServiceContext ServiceEntry"
    ),
    "market_data_services.storage": (
        "DeadlineExceeded Timeouts candles create_engine current dom_metrics dom_snapshots "
        "is_sqlite metadata normalise_url sentiment_metrics sentiment_readings service_progress "
        "settings ticks upgrade upsert upsert_sql "
        "UnknownSymbolError read_candles read_book_metrics read_sentiment iter_candles "
        "iter_book_metrics iter_sentiment"
    ),
}

#: Where some of them live now: the old path must give the very same object.
MOVED = {
    ("market_data_services.aggregators.ticks", "ingest_ticks"): "market_data_services.ingest",
    ("market_data_services.aggregators.ticks", "write_ticks"): "market_data_services.ingest",
    ("market_data_services.aggregators.dom", "write_dom"): "market_data_services.ingest",
    ("market_data_services.aggregators.dom", "unpack_levels"): "market_data_services.market",
    ("market_data_services.aggregators.sentiment", "SentimentReading"): (
        "market_data_services.ingest"
    ),
    ("market_data_services.app.services", "SERVICES"): "market_data_services.app.catalog",
    ("market_data_services.aggregators.ticks", "TICK_WRITE_LOCK_KEY"): (
        "market_data_services.storage.locks"
    ),
}


@pytest.mark.parametrize("module", sorted(EXPORTED_BEFORE))
def test_every_name_a_module_exported_before_is_still_exported_there(module: str) -> None:
    imported = importlib.import_module(module)
    for name in EXPORTED_BEFORE[module].split():
        assert hasattr(imported, name), f"{module}.{name}"
        assert name in imported.__all__, f"{module}.__all__ lacks {name}"


@pytest.mark.parametrize(("old", "name"), sorted(MOVED))
def test_an_old_path_gives_the_same_object_as_the_new_one(old: str, name: str) -> None:
    new = MOVED[(old, name)]
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name
    )


def test_no_storage_module_shadows_a_table_of_the_same_name() -> None:
    storage = importlib.import_module("market_data_services.storage")
    for info in pkgutil.iter_modules(storage.__path__, "market_data_services.storage."):
        importlib.import_module(info.name)
    for name in ("candles", "settings", "ticks", "service_progress", "dom_snapshots"):
        assert isinstance(getattr(storage, name), Table), name
