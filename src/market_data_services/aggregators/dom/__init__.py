"""Order books: ``DOMAggregatorService`` turns snapshots into book metrics.

The ingestion names below moved to ``market_data_services.ingest.dom`` (issue 11); they
are re-exported here so that imports written before still work. New code imports them
from ``market_data_services.ingest``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_services._lazy import lazy_exports

if TYPE_CHECKING:
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
    from market_data_services.market.book import (
        pack_levels,
        unpack_levels,
    )

#: public name -> the module it comes from, imported on first use (PEP 562): the service
#: module does not import the ingestion these names re-export.
_EXPORTS = {
    "DEFAULT_BATCH_SIZE": "market_data_services.aggregators.dom.service",
    "SERVICE_NAME": "market_data_services.aggregators.dom.service",
    "DOMAggregatorService": "market_data_services.aggregators.dom.service",
    "stored_dom_symbols": "market_data_services.aggregators.dom.service",
    "DOM_WRITE_LOCK_KEY": "market_data_services.ingest.dom",
    "LAYOUTS": "market_data_services.ingest.dom",
    "REJECT_REASONS": "market_data_services.ingest.dom",
    "BookFile": "market_data_services.ingest.dom",
    "BookSnapshot": "market_data_services.ingest.dom",
    "ImplausibleTimeError": "market_data_services.ingest.dom",
    "NotABookFileError": "market_data_services.ingest.dom",
    "dom_ingest_metrics": "market_data_services.ingest.dom",
    "ingest_dom": "market_data_services.ingest.dom",
    "inspect_dom_files": "market_data_services.ingest.dom",
    "write_dom": "market_data_services.ingest.dom",
    "pack_levels": "market_data_services.market.book",
    "unpack_levels": "market_data_services.market.book",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


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
