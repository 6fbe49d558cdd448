"""SQL, and the only package that reads the database's dialect: schema, engine creation,
migrations, upserts and bulk writes, advisory locks (``locks``), what a service remembers
(``progress``), the services' reads (``reads``), the arrival order of raw rows that their
watermarks follow (``arrival``), batched deletes for the retention (``retention``), and
derived data read back (``derived``; as pandas DataFrames: ``read_candles``,
``read_book_metrics``, ``read_sentiment`` and their ``iter_*`` forms).

::

    from market_data_services.storage import create_engine, upgrade

    engine = create_engine("sqlite:///mds.sqlite")
    upgrade(engine)  # create or update the tables
"""

from typing import TYPE_CHECKING

from market_data_services._lazy import lazy_exports
from market_data_services.storage.derived import UnknownSymbolError
from market_data_services.storage.engine import Timeouts, create_engine, is_sqlite, normalise_url
from market_data_services.storage.frames import (
    iter_book_metrics,
    iter_candles,
    iter_sentiment,
    read_book_metrics,
    read_candles,
    read_sentiment,
)
from market_data_services.storage.migrate import current, upgrade
from market_data_services.storage.schema import (
    candles,
    dom_metrics,
    dom_snapshots,
    metadata,
    sentiment_metrics,
    sentiment_readings,
    service_progress,
    settings,
    ticks,
)
from market_data_services.storage.upsert import upsert, upsert_sql

if TYPE_CHECKING:
    from market_data_services.storage._deadline import DeadlineExceeded


# DeadlineExceeded is a psycopg exception: importing it with the package would import
# psycopg for every SQLite command too (a twentieth of a second of its start).
__getattr__, __dir__ = lazy_exports(
    __name__, {"DeadlineExceeded": "market_data_services.storage._deadline"}
)


__all__ = [
    "DeadlineExceeded",
    "Timeouts",
    "UnknownSymbolError",
    "candles",
    "create_engine",
    "current",
    "dom_metrics",
    "dom_snapshots",
    "is_sqlite",
    "iter_book_metrics",
    "iter_candles",
    "iter_sentiment",
    "metadata",
    "normalise_url",
    "read_book_metrics",
    "read_candles",
    "read_sentiment",
    "sentiment_metrics",
    "sentiment_readings",
    "service_progress",
    "settings",
    "ticks",
    "upgrade",
    "upsert",
    "upsert_sql",
]
