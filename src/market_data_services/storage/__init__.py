"""SQLAlchemy schema, engine creation, migrations and upserts.

::

    from market_data_services.storage import create_engine, upgrade

    engine = create_engine("sqlite:///mds.sqlite")
    upgrade(engine)  # create or update the tables
"""

from market_data_services.storage.engine import create_engine, is_sqlite, normalise_url
from market_data_services.storage.migrate import current, upgrade
from market_data_services.storage.schema import (
    candles,
    metadata,
    service_progress,
    settings,
    ticks,
)
from market_data_services.storage.upsert import upsert, upsert_sql

__all__ = [
    "candles",
    "create_engine",
    "current",
    "is_sqlite",
    "metadata",
    "normalise_url",
    "service_progress",
    "settings",
    "ticks",
    "upgrade",
    "upsert",
    "upsert_sql",
]
