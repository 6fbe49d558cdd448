"""Market rules, pure and numpy only: the symbol rule, timeframes and their buckets, and
order books as arrays. Nothing here reads a file, a clock or a database."""

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
