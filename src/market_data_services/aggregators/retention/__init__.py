"""Retention: raw rows deleted once older than their retention and already aggregated,
derived candles once older than theirs (``service.py``)."""

from market_data_services.aggregators.retention.service import (
    DEFAULT_BATCH_SIZE,
    RAW_TABLES,
    RETENTION_TABLES,
    SERVICE_NAME,
    RetentionService,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "RAW_TABLES",
    "RETENTION_TABLES",
    "SERVICE_NAME",
    "RetentionService",
]
