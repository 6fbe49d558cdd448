"""What a service remembers in the database: where it got to, per symbol
(``service_progress``), and the settings its stored results were computed with
(``settings``).

Progress values are integers (ids, epoch ms) or None; a key never written reads as None.
Writes go through the caller's transaction, so the progress and the rows it describes
commit together: after a crash the stored progress always matches the stored results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, delete, select

from market_data_services.storage.schema import service_progress, settings
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


def forget_progress(connection: Connection, service: str) -> None:
    """Delete every stored key of ``service`` (its results are being rebuilt)."""
    connection.execute(delete(service_progress).where(service_progress.c.service == service))


def read_settings(connection: Connection, keys: Iterable[str]) -> dict[str, str]:
    """The stored values of ``keys`` (a key never written is absent)."""
    wanted = list(keys)
    rows = connection.execute(
        select(settings.c.key, settings.c.value).where(settings.c.key.in_(wanted))
    )
    return {key: value for key, value in rows}


def write_settings(connection: Connection, values: Mapping[str, str], *, now_ms: int) -> None:
    """Store ``values`` (key -> text) in ``settings``."""
    upsert(
        connection,
        settings,
        [(key, value, now_ms) for key, value in values.items()],
        columns=("key", "value", "updated_at"),
    )


__all__ = ["forget_progress", "read_progress", "read_settings", "write_progress", "write_settings"]
