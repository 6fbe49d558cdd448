"""The one symbol rule: what a symbol name may be, wherever one comes in.

Ingestion, ``write_*`` calls, the services and the configuration all check symbols
here, so a symbol that can be loaded can also be configured (``BTC+USD`` included).
"""

from __future__ import annotations

import re

#: Length limit of a symbol ("EUR/USD", "BTCUSDT", "XAU/USD.fx"); the column width too.
SYMBOL_LENGTH = 32

_SYMBOL = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9/._:+-]{{0,{SYMBOL_LENGTH - 1}}}$")


def is_valid_symbol(name: str) -> bool:
    return bool(_SYMBOL.match(name))


def check_symbol(symbol: str) -> str:
    """``symbol`` if it is a valid symbol name, else a ValueError naming the rule."""
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise ValueError(
            f"symbol must be 1-{SYMBOL_LENGTH} characters of letters, digits and / . _ : + - "
            f"starting with a letter or digit, got {symbol!r}"
        )
    return symbol


def symbol_rule() -> str:
    """The symbol rule in words, for rejection messages."""
    return f"letters, digits and / . _ : + -, at most {SYMBOL_LENGTH} characters"


__all__ = ["SYMBOL_LENGTH", "check_symbol", "is_valid_symbol", "symbol_rule"]
