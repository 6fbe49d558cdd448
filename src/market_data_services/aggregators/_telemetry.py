"""Metric families of the market-data services, created once per registry."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import REGISTRY, CollectorRegistry

T = TypeVar("T")

# Guarded by _lock: registry -> {family-set factory: its instance in that registry}.
_lock = threading.Lock()
_families: weakref.WeakKeyDictionary[CollectorRegistry, dict[object, object]] = (
    weakref.WeakKeyDictionary()
)


def families_for(
    registry: CollectorRegistry | None, factory: Callable[[CollectorRegistry], T]
) -> T:
    """The metric families ``factory`` makes, made once per registry and then shared.

    Prometheus refuses a second family of the same name in one registry, so every
    service and ingest call with the same registry must share one set.
    """
    target = REGISTRY if registry is None else registry
    with _lock:
        per_registry = _families.setdefault(target, {})
        families = per_registry.get(factory)
        if families is None:
            families = per_registry[factory] = factory(target)
        return families  # type: ignore[return-value]
