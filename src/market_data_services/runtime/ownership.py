"""Sharing a service's symbols with other instances: what the loop needs to know of it.

The loop asks its ``SymbolOwnership`` (``storage.ownership`` has the PostgreSQL one) to
claim a share of the configured symbols at the start of every iteration and works only
the symbols it owns; it closes it when the loop ends. Without one, a service owns all its
symbols. ``OwnershipState`` is what health, ``mds status`` and the metrics read.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Claim(Protocol):
    """One claim's result (``storage.ownership.Claim`` is one)."""

    @property
    def owned(self) -> Sequence[str]: ...
    @property
    def instances(self) -> int: ...
    @property
    def acquired(self) -> Sequence[str]: ...
    @property
    def released(self) -> Sequence[str]: ...
    @property
    def unowned(self) -> Sequence[str]: ...


class SymbolOwnership(Protocol):
    """Claims this instance's share of ``symbols``; called by the loop's thread only."""

    def claim(self, symbols: Sequence[str]) -> Claim: ...

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class OwnershipState:
    """A service's symbols after its latest claim (replaced whole, never mutated)."""

    #: Whether the symbols are shared with other instances (False: owns all it is given).
    shared: bool = False
    owned: tuple[str, ...] = ()
    #: Live instances sharing them (this one included); 1 when not shared.
    instances: int = 1
    #: Configured symbols nobody owned at the latest claim, and since when (unix time)
    #: this instance has seen one of them continuously without an owner (0: none).
    unowned: tuple[str, ...] = ()
    unowned_since: float = 0.0


class OwnershipStats:
    """The state and the change counts of one service; the loop writes, scrapes read."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = OwnershipState()  # one reference, replaced under lock
        self.acquired = 0  # guarded by lock
        self.released = 0  # guarded by lock
        # symbol -> unix time first seen without an owner; loop thread only.
        self._unowned_since: dict[str, float] = {}

    def record(self, claim: Claim | None, symbols: Sequence[str], now: float) -> OwnershipState:
        """Record a claim (None: not shared, every symbol owned) and return the new state."""
        if claim is None:
            state = OwnershipState(owned=tuple(symbols))
            acquired = released = 0
        else:
            unowned = tuple(claim.unowned)
            since = {s: self._unowned_since.get(s, now) for s in unowned}
            self._unowned_since = since
            state = OwnershipState(
                shared=True,
                owned=tuple(claim.owned),
                instances=claim.instances,
                unowned=unowned,
                unowned_since=min(since.values(), default=0.0),
            )
            acquired, released = len(claim.acquired), len(claim.released)
        with self.lock:
            self.state = state
            self.acquired += acquired
            self.released += released
        return state

    def lost(self) -> OwnershipState:
        """Record that every symbol was let go (the loop ended, or a claim failed)."""
        with self.lock:
            previous = self.state
            if previous.shared:
                self.released += len(previous.owned)
            self.state = OwnershipState(shared=previous.shared, instances=previous.instances)
            return self.state


__all__ = ["Claim", "OwnershipState", "OwnershipStats", "SymbolOwnership"]
