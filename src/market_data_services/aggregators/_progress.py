"""Where a service got to, per symbol, in the ``service_progress`` table.

Values are integers (ids, epoch ms) or None; a key never written reads as None. Writes go
through the caller's transaction, so the progress and the rows it describes commit
together: after a crash the stored progress always matches the stored results.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, select

from market_data_services.storage.schema import service_progress
from market_data_services.storage.upsert import upsert


def read_progress(connection: Connection, service: str, symbol: str) -> dict[str, int | None]:
    """Every stored key of ``service`` for ``symbol``."""
    table = service_progress
    rows = connection.execute(
        select(table.c.key, table.c.value).where(
            table.c.service == service, table.c.symbol == symbol
        )
    )
    return {key: value for key, value in rows}


def write_progress(
    connection: Connection,
    service: str,
    symbol: str,
    values: Mapping[str, int | None],
    *,
    now_ms: int,
) -> None:
    """Store ``values`` (key -> int or None) for ``service`` and ``symbol``."""
    upsert(
        connection,
        service_progress,
        [(service, symbol, key, value, now_ms) for key, value in values.items()],
        columns=("service", "symbol", "key", "value", "updated_at"),
    )


__all__ = ["read_progress", "write_progress"]
