"""Instances share a service's symbols through PostgreSQL session advisory locks."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from market_data_services.storage import create_engine
from market_data_services.storage.ownership import (
    Claim,
    SymbolOwnership,
    lock_holders,
    symbol_key,
    symbols_for_backfill,
)
from tests.databases import DatabaseFactory

SERVICE = "AggregatorService"
SYMBOLS = [f"S{i:02d}/USD" for i in range(30)]

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(database_factory: DatabaseFactory) -> Iterator[Engine]:
    engine = create_engine(database_factory.url("postgresql"))
    yield engine
    engine.dispose()


def _instances(engine: Engine, count: int) -> list[SymbolOwnership]:
    return [SymbolOwnership(engine, SERVICE, application_name=f"test {i}") for i in range(count)]


def _rounds(instances: list[SymbolOwnership], rounds: int) -> list[Claim]:
    """Every instance claims, ``rounds`` times over, as their iterations would."""
    claims: list[Claim] = []
    for _ in range(rounds):
        claims = [instance.claim(SYMBOLS) for instance in instances]
    return claims


def _assert_split(claims: list[Claim]) -> None:
    """Every symbol owned by exactly one instance, none more than its share, and, seen
    from the last to claim, no symbol without an owner."""
    owned = [set(c.owned) for c in claims]
    assert sum(len(o) for o in owned) == len(SYMBOLS), "a symbol owned twice or by no one"
    assert set().union(*owned) == set(SYMBOLS)
    quota = math.ceil(len(SYMBOLS) / len(claims))
    assert all(len(o) <= quota for o in owned), [len(o) for o in owned]
    assert claims[-1].unowned == ()


def test_three_instances_each_own_a_third_and_no_symbol_twice(pg: Engine) -> None:
    instances = _instances(pg, 3)
    try:
        # The first to claim takes all, and gives two thirds up once it sees the others.
        claims = _rounds(instances, 2)
        _assert_split(claims)
        assert [len(c.owned) for c in claims] == [10, 10, 10]
        assert {c.instances for c in claims} == {3}
    finally:
        for instance in instances:
            instance.close()


def test_an_instance_that_joins_gets_its_share_from_the_others(pg: Engine) -> None:
    first, *later = _instances(pg, 3)
    try:
        alone = first.claim(SYMBOLS)
        assert len(alone.owned) == 30 and alone.instances == 1
        assert [len(x.claim(SYMBOLS).owned) for x in later] == [0, 0]  # all taken
        kept = first.claim(SYMBOLS)  # its next iteration: three instances now
        assert len(kept.owned) == 10 and len(kept.released) == 20
        claims = [kept, *(x.claim(SYMBOLS) for x in later)]
        _assert_split(claims)
        assert [len(c.acquired) for c in claims[1:]] == [10, 10]
    finally:
        for instance in (first, *later):
            instance.close()


def test_a_dead_instances_symbols_are_taken_at_the_survivors_next_claim(pg: Engine) -> None:
    instances = _instances(pg, 3)
    try:
        _rounds(instances, 2)
        victim = instances[2]
        with pg.connect() as connection:
            # What the server does when a process dies: it ends its session.
            pid = lock_holders(connection, SERVICE)["symbol_keys"]
            victim_pid = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = 'test 2'")
            ).scalar_one()
            assert victim_pid in pid.values()
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim_pid})
        survivors = instances[:2]
        claims = [s.claim(SYMBOLS) for s in survivors]  # one iteration each
        _assert_split(claims)
        assert [len(c.owned) for c in claims] == [15, 15]
        with pytest.raises(Exception):  # noqa: B017 (the driver's error for a killed session)
            victim.claim(SYMBOLS)
    finally:
        for instance in instances:
            instance.close()


def test_closing_an_instance_hands_its_symbols_over(pg: Engine) -> None:
    instances = _instances(pg, 2)
    try:
        _rounds(instances, 2)
        instances[1].close()
        claim = instances[0].claim(SYMBOLS)
        assert len(claim.owned) == 30 and len(claim.acquired) == 15
    finally:
        for instance in instances:
            instance.close()


def test_a_backfill_waits_for_the_owner_to_let_its_symbol_go_and_blocks_it_meanwhile(
    pg: Engine,
) -> None:
    owner = SymbolOwnership(pg, SERVICE)
    entered = threading.Event()
    leave = threading.Event()

    def backfill() -> None:
        with symbols_for_backfill(pg, SERVICE, ["S03/USD"]):
            entered.set()
            leave.wait(10)

    try:
        assert "S03/USD" in owner.claim(SYMBOLS).owned
        worker = threading.Thread(target=backfill)
        worker.start()
        assert not entered.wait(0.5), "the backfill ran while the owner held the symbol"
        claim = owner.claim(SYMBOLS)  # the owner's next iteration sees the backfill
        assert "S03/USD" not in claim.owned and "S03/USD" in claim.released
        assert entered.wait(10)
        assert "S03/USD" not in owner.claim(SYMBOLS).owned  # not while the backfill runs
        leave.set()
        worker.join(10)
        assert "S03/USD" in owner.claim(SYMBOLS).owned  # taken back after it
    finally:
        leave.set()
        owner.close()


def test_a_symbol_no_longer_configured_is_released(pg: Engine) -> None:
    owner = SymbolOwnership(pg, SERVICE)
    try:
        owner.claim(SYMBOLS)
        claim = owner.claim(SYMBOLS[:10])
        assert claim.owned == tuple(SYMBOLS[:10]) and len(claim.released) == 20
        with pg.connect() as connection:
            assert len(lock_holders(connection, SERVICE)["symbol_keys"]) == 10
    finally:
        owner.close()


def test_symbols_whose_keys_collide_are_owned_together_and_none_is_left_unworked(
    pg: Engine,
) -> None:
    # Two names with one CRC-32 (found by search): they share one lock.
    assert symbol_key("SFJWNDP") == symbol_key("KJDGQIR")
    symbols = ["SFJWNDP", "KJDGQIR", "EUR/USD", "GBP/USD"]
    first, second = _instances(pg, 2)
    try:
        for _ in range(3):
            claims = [first.claim(symbols), second.claim(symbols)]
        owned = [set(c.owned) for c in claims]
        assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(symbols)
        assert any({"SFJWNDP", "KJDGQIR"} <= o for o in owned)
    finally:
        first.close()
        second.close()
