"""The contrarian signal: when the crowd is too long or too short, with hysteresis.

Apart from the service: the configuration checks ``[services.sentiment]``'s thresholds
at every command's start, and should not import the service for that.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from market_data_services.runtime.validate import fraction


@dataclass(frozen=True, kw_only=True)
class ContrarianThresholds:
    """When the crowd is too long or too short, as long shares (0..1), with hysteresis.

    The signal becomes -1 when the long share reaches ``long_enter`` and stays -1 until
    it falls below ``long_exit``; it becomes +1 when the long share drops to
    ``short_enter`` and stays until it rises above ``short_exit``. Between, it is 0.
    Needs ``0 <= short_enter <= short_exit <= long_exit <= long_enter <= 1`` and
    ``short_enter < long_enter``.
    """

    long_enter: float = 0.70
    long_exit: float = 0.65
    short_enter: float = 0.30
    short_exit: float = 0.35

    def __post_init__(self) -> None:
        for name in ("long_enter", "long_exit", "short_enter", "short_exit"):
            fraction(getattr(self, name), name)
        order = ("short_enter", "short_exit", "long_exit", "long_enter")
        values = [getattr(self, name) for name in order]
        for (low_name, low), (high_name, high) in itertools.pairwise(
            zip(order, values, strict=True)
        ):
            if low > high:
                raise ValueError(
                    f"thresholds must satisfy short_enter <= short_exit <= long_exit <= "
                    f"long_enter; got {low_name}={low:g} above {high_name}={high:g}"
                )
        if self.short_enter >= self.long_enter:
            raise ValueError(
                f"short_enter must be below long_enter, got {self.short_enter:g} and "
                f"{self.long_enter:g}"
            )

    def next_signal(self, previous: int, long_share: float) -> int:
        """The signal after a reading of ``long_share``, given the one before."""
        if previous == -1 and long_share >= self.long_exit:
            return -1
        if previous == 1 and long_share <= self.short_exit:
            return 1
        if long_share >= self.long_enter:
            return -1
        if long_share <= self.short_enter:
            return 1
        return 0


__all__ = ["ContrarianThresholds"]
