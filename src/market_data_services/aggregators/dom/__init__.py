"""Order books: ``DOMAggregatorService`` turns snapshots into book metrics.

The ingestion names below moved to ``market_data_services.ingest.dom`` (issue 11); they
are re-exported here so that imports written before still work. New code imports them
from ``market_data_services.ingest``.
"""

from market_data_services.aggregators.dom.service import (
    DEFAULT_BATCH_SIZE,
    SERVICE_NAME,
    DOMAggregatorService,
    stored_dom_symbols,
)
from market_data_services.ingest.dom import (
    DOM_WRITE_LOCK_KEY,
    LAYOUTS,
    REJECT_REASONS,
    BookFile,
    BookSnapshot,
    ImplausibleTimeError,
    NotABookFileError,
    dom_ingest_metrics,
    ingest_dom,
    inspect_dom_files,
    write_dom,
)
from market_data_services.market.book import pack_levels, unpack_levels

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DOM_WRITE_LOCK_KEY",
    "LAYOUTS",
    "REJECT_REASONS",
    "SERVICE_NAME",
    "BookFile",
    "BookSnapshot",
    "DOMAggregatorService",
    "ImplausibleTimeError",
    "NotABookFileError",
    "dom_ingest_metrics",
    "ingest_dom",
    "inspect_dom_files",
    "pack_levels",
    "stored_dom_symbols",
    "unpack_levels",
    "write_dom",
]
