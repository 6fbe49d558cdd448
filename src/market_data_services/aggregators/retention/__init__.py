"""Retention: raw rows deleted once older than their retention and already aggregated,
derived candles once older than theirs (``service.py``); which tables a retention may be
set for, and its check (``policies.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_services._lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_services.aggregators.retention.policies import (
        DEFAULT_BATCH_SIZE,
        RAW_TABLES,
        RETENTION_TABLES,
    )
    from market_data_services.aggregators.retention.service import (
        SERVICE_NAME,
        RetentionService,
    )

#: public name -> the module it comes from, imported on first use (PEP 562): the
#: configuration checks a policy (policies.py) without importing the service.
_EXPORTS = {
    "DEFAULT_BATCH_SIZE": "market_data_services.aggregators.retention.policies",
    "RAW_TABLES": "market_data_services.aggregators.retention.policies",
    "RETENTION_TABLES": "market_data_services.aggregators.retention.policies",
    "SERVICE_NAME": "market_data_services.aggregators.retention.service",
    "RetentionService": "market_data_services.aggregators.retention.service",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RAW_TABLES",
    "RETENTION_TABLES",
    "SERVICE_NAME",
    "RetentionService",
]
