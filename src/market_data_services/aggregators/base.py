"""What the derived-data services share."""

from __future__ import annotations


class SettingsMismatchError(RuntimeError):
    """The stored results were computed with other settings (candles: price basis or day
    start; sentiment: window, EMA, thresholds or source). Configure the same, or rebuild
    them (``mds backfill --rebuild``; ``rebuild=True``)."""


__all__ = ["SettingsMismatchError"]
