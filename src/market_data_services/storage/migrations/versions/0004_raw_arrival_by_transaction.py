"""Raw rows on PostgreSQL carry the id of the transaction that inserted them (``arrival``),
so the services' watermarks never pass a row still in flight (issue 14, point 3).

PostgreSQL only: on SQLite the ``id`` already arrives in order (one writer at a time).
See ``storage/arrival.py``.

Rows already stored get a constant ``arrival`` (1, or 2 for rows some service has not
read yet), no table rewrite; the stored watermarks move to the same scale (1: "every old
row read"). Transaction ids start at 3, so every new row sorts after the old ones.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_DEFAULT = "CAST(CAST(pg_current_xact_id() AS text) AS bigint)"
_Keys = list[tuple[str, str]]
#: Per raw table: the (service, progress key) pairs that are its arrival watermarks, the
#: keys of a pass in progress (restarted from the watermark), and the arrival index.
_TABLES: tuple[tuple[str, _Keys, _Keys, list[str]], ...] = (
    ("ticks", [("AggregatorService", "tick_id")], [], ["arrival"]),
    (
        "dom_snapshots",
        [("DOMAggregatorService", "arrival_id")],
        [("DOMAggregatorService", "target_id")],
        ["symbol", "arrival"],
    ),
    (
        "sentiment_readings",
        [("SentimentAggregatorService", "arrival_id")],
        [],
        ["symbol", "arrival"],
    ),
)


def _index_name(table: str, columns: list[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def _keys_sql(pairs: _Keys) -> str:
    return " OR ".join(f"(service = '{service}' AND key = '{key}')" for service, key in pairs)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, watermarks, passes, index in _TABLES:
        keys = _keys_sql(watermarks)
        op.execute(f"ALTER TABLE {table} ADD COLUMN arrival bigint NOT NULL DEFAULT 1")
        # Rows above the lowest stored watermark are unread by some service: after it.
        op.execute(
            f"UPDATE {table} SET arrival = 2 WHERE id > "
            f"(SELECT min(value) FROM service_progress WHERE ({keys}) AND value > 0)"
        )
        op.execute(f"UPDATE service_progress SET value = 1 WHERE ({keys}) AND value > 0")
        if passes:
            op.execute(f"UPDATE service_progress SET value = NULL WHERE {_keys_sql(passes)}")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN arrival SET DEFAULT {_DEFAULT}")
        op.create_index(_index_name(table, index), table, index)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, watermarks, passes, index in _TABLES:
        keys = _keys_sql(watermarks)
        # Back to ids: below the first row not yet read, or the newest id when all are.
        op.execute(
            f"UPDATE service_progress AS p SET value = coalesce("
            f"(SELECT min(t.id) - 1 FROM {table} AS t WHERE t.arrival > p.value), "
            f"(SELECT max(t.id) FROM {table} AS t), 0) WHERE ({keys}) AND value IS NOT NULL"
        )
        if passes:
            op.execute(f"UPDATE service_progress SET value = NULL WHERE {_keys_sql(passes)}")
        op.drop_index(_index_name(table, index), table_name=table)
        op.drop_column(table, "arrival")
