"""Market rules, pure and numpy only: the symbol rule, timeframes and their buckets, and
order books as arrays. Nothing here reads a file, a clock or a database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_services._lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_services.market.book import (
        BOOK_REASONS,
        METRIC_COLUMNS,
        BookBatch,
        BookProblem,
        Top,
        check_books,
        compute_metrics,
        crossed_and_locked,
        pack_levels,
        top_of_book,
        unpack_levels,
    )
    from market_data_services.market.symbols import (
        SYMBOL_LENGTH,
        check_symbol,
        is_valid_symbol,
        symbol_rule,
    )
    from market_data_services.market.timeframes import (
        HIGHER_TIMEFRAMES,
        MINUTE_MS,
        TF_RULES,
        TIMEFRAMES,
        Bucketing,
    )

#: public name -> the module it comes from, imported on first use (PEP 562): the symbol
#: rule and the timeframes do not import the order-book arrays.
_EXPORTS = {
    "BOOK_REASONS": "market_data_services.market.book",
    "METRIC_COLUMNS": "market_data_services.market.book",
    "BookBatch": "market_data_services.market.book",
    "BookProblem": "market_data_services.market.book",
    "Top": "market_data_services.market.book",
    "check_books": "market_data_services.market.book",
    "compute_metrics": "market_data_services.market.book",
    "crossed_and_locked": "market_data_services.market.book",
    "pack_levels": "market_data_services.market.book",
    "top_of_book": "market_data_services.market.book",
    "unpack_levels": "market_data_services.market.book",
    "SYMBOL_LENGTH": "market_data_services.market.symbols",
    "check_symbol": "market_data_services.market.symbols",
    "is_valid_symbol": "market_data_services.market.symbols",
    "symbol_rule": "market_data_services.market.symbols",
    "HIGHER_TIMEFRAMES": "market_data_services.market.timeframes",
    "MINUTE_MS": "market_data_services.market.timeframes",
    "TF_RULES": "market_data_services.market.timeframes",
    "TIMEFRAMES": "market_data_services.market.timeframes",
    "Bucketing": "market_data_services.market.timeframes",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "BOOK_REASONS",
    "HIGHER_TIMEFRAMES",
    "METRIC_COLUMNS",
    "MINUTE_MS",
    "SYMBOL_LENGTH",
    "TF_RULES",
    "TIMEFRAMES",
    "BookBatch",
    "BookProblem",
    "Bucketing",
    "Top",
    "check_books",
    "check_symbol",
    "compute_metrics",
    "crossed_and_locked",
    "is_valid_symbol",
    "pack_levels",
    "symbol_rule",
    "top_of_book",
    "unpack_levels",
]
