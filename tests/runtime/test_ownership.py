"""What the loop records of its claims: the numbers behind the ownership metrics."""

from __future__ import annotations

from market_data_services.runtime.ownership import OwnershipStats
from market_data_services.storage.ownership import Claim

SYMBOLS = ["EUR/USD", "GBP/USD", "NZD/USD"]


def _claim(owned: tuple[str, ...], unowned: tuple[str, ...] = (), **kw: tuple[str, ...]) -> Claim:
    return Claim(owned=owned, instances=2, quota=2, unowned=unowned, **kw)


def test_a_symbol_without_an_owner_counts_from_the_first_claim_that_saw_it() -> None:
    stats = OwnershipStats()
    assert stats.record(_claim(("EUR/USD",), ("NZD/USD",)), SYMBOLS, 100.0).unowned_since == 100.0
    # Still without an owner later, and another one too: the age is the oldest one's.
    state = stats.record(_claim(("EUR/USD",), ("NZD/USD", "GBP/USD")), SYMBOLS, 160.0)
    assert state.unowned_since == 100.0 and state.unowned == ("NZD/USD", "GBP/USD")
    # Owned again: the clock starts over for the one that is left, then stops.
    assert stats.record(_claim(("EUR/USD",), ("GBP/USD",)), SYMBOLS, 220.0).unowned_since == 160.0
    assert stats.record(_claim(("EUR/USD", "GBP/USD")), SYMBOLS, 280.0).unowned_since == 0.0


def test_changes_are_counted_and_losing_everything_counts_as_released() -> None:
    stats = OwnershipStats()
    stats.record(_claim(("EUR/USD", "GBP/USD"), acquired=("EUR/USD", "GBP/USD")), SYMBOLS, 1.0)
    stats.record(_claim(("EUR/USD",), released=("GBP/USD",)), SYMBOLS, 2.0)
    assert (stats.acquired, stats.released) == (2, 1)
    state = stats.lost()  # a failed claim, or the loop ended
    assert state.owned == () and state.shared
    assert (stats.acquired, stats.released) == (2, 2)


def test_a_service_that_does_not_share_owns_every_symbol() -> None:
    state = OwnershipStats().record(None, SYMBOLS, 1.0)
    assert state.owned == tuple(SYMBOLS) and not state.shared and state.instances == 1
