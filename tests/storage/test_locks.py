"""The advisory lock every raw-data writer and the migrations take."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from market_data_services.storage import create_engine
from market_data_services.storage.engine import begin_write
from market_data_services.storage.locks import (
    DOM_WRITE_LOCK_KEY,
    MIGRATE_LOCK_KEY,
    SENTIMENT_WRITE_LOCK_KEY,
    TICK_WRITE_LOCK_KEY,
    hold_advisory_lock,
)
from tests.databases import DatabaseFactory


@pytest.mark.postgres
def test_a_held_write_lock_keeps_other_writers_out_until_its_transaction_ends(
    database_factory: DatabaseFactory,
) -> None:
    engine = create_engine(database_factory.url("postgresql"))
    try:
        probe = text("SELECT pg_try_advisory_xact_lock(:key)")
        with begin_write(engine) as holder:
            hold_advisory_lock(holder, TICK_WRITE_LOCK_KEY)
            with engine.connect() as other, other.begin():
                assert other.execute(probe, {"key": TICK_WRITE_LOCK_KEY}).scalar() is False
                # Another table's writers are not held up.
                assert other.execute(probe, {"key": DOM_WRITE_LOCK_KEY}).scalar() is True
        with engine.connect() as other, other.begin():
            assert other.execute(probe, {"key": TICK_WRITE_LOCK_KEY}).scalar() is True
    finally:
        engine.dispose()


def test_every_table_has_its_own_key_and_the_tick_key_is_the_published_one() -> None:
    keys = {TICK_WRITE_LOCK_KEY, DOM_WRITE_LOCK_KEY, SENTIMENT_WRITE_LOCK_KEY, MIGRATE_LOCK_KEY}
    assert len(keys) == 4
    # Programs that write ticks themselves take this number: it must not change.
    assert TICK_WRITE_LOCK_KEY == 1_576_837_435
