from __future__ import annotations

import pytest

from market_data_services.market.symbols import (
    SYMBOL_LENGTH,
    check_symbol,
    is_valid_symbol,
    symbol_rule,
)


@pytest.mark.parametrize(
    "name", ["EUR/USD", "BTC+USD", "XAU/USD.fx", "ES:CME", "a" * SYMBOL_LENGTH]
)
def test_names_of_letters_digits_and_the_rules_punctuation_are_symbols(name: str) -> None:
    assert is_valid_symbol(name)
    assert check_symbol(name) == name


@pytest.mark.parametrize("name", ["", "EUR USD", "-EUR", "/USD", "a" * (SYMBOL_LENGTH + 1), "EUR$"])
def test_other_names_are_refused_with_the_rule_in_words(name: str) -> None:
    assert not is_valid_symbol(name)
    with pytest.raises(ValueError, match=rf"symbol must be 1-{SYMBOL_LENGTH} characters") as info:
        check_symbol(name)
    assert repr(name) in str(info.value)
    assert f"at most {SYMBOL_LENGTH} characters" in symbol_rule()
