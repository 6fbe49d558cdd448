"""Tick ids on PostgreSQL come from the sequence a thousand at a time per session.

A tick load writes with two transactions at once on PostgreSQL (``mds ingest``); with the
identity's default of one value per call, both server processes took the sequence's
lock for every row and appended to the same last page of the id index, which cost the
server about a fifth of its CPU for the load. Each session now takes a block of 1,000
ids. Ids of ticks stored by different sessions interleave in blocks and a session that
ends leaves a gap; nothing reads ticks in id order on PostgreSQL (the services follow
``arrival``, revision 0004). SQLite has no sequence: nothing changes there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ticks ALTER COLUMN id SET CACHE 1000")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ticks ALTER COLUMN id SET CACHE 1")
