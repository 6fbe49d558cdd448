"""The cost of the PostgreSQL arrival horizon (``storage/arrival.py``) against the read it
replaced, ``SELECT max(id) FROM ticks``, on the same connection.

Run: ``.venv/bin/python benchmarks/arrival.py --db postgresql+psycopg://...`` (a scratch
database; it is migrated, nothing is written). ``--idle N`` opens N more connections, N/2
of them inside a write transaction of this database, N/2 idle, since the horizon reads
``pg_stat_activity``, whose size follows the connections.

Rounds interleave the two reads (best of ``--rounds`` rounds of ``--calls`` calls each),
so load from elsewhere hits both alike. The candle service reads the horizon once per
pass; the book and sentiment services once per iteration.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence

import psycopg
from sqlalchemy import Connection, make_url, text

from market_data_services.storage import create_engine, ticks, upgrade
from market_data_services.storage.arrival import arrival_horizon


def _per_call(read: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        read()
    return (time.perf_counter() - started) / calls


def _open_others(url: str, count: int) -> list[psycopg.Connection[tuple[object, ...]]]:
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    others = []
    for number in range(count):
        connection = psycopg.connect(plain)
        if number % 2 == 0:  # holds an id: a write transaction left open
            connection.execute("SELECT pg_current_xact_id()")
        others.append(connection)
    return others


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a scratch PostgreSQL database URL")
    parser.add_argument("--idle", type=int, default=0, help="other connections to open")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    engine = create_engine(args.db)
    if engine.dialect.name != "postgresql":
        print("benchmarks/arrival.py measures PostgreSQL only", file=sys.stderr)
        return 2
    upgrade(engine)
    others = _open_others(args.db, args.idle)
    try:
        with engine.connect() as connection:
            best = _measure(connection, args.calls, args.rounds)
    finally:
        for other in others:
            other.close()
        engine.dispose()
    horizon, max_id = best["arrival_horizon"], best["max(id)"]
    print(
        f"# arrival.py  python {platform.python_version()}  {platform.machine()}  "
        f"calls={args.calls} rounds={args.rounds} other connections={args.idle}"
    )
    print(f"{'read':<48}{'us/call':>10}")
    print(f"{'arrival_horizon (snapshot + pg_stat_activity)':<48}{horizon * 1e6:>10.1f}")
    print(f"{'SELECT max(id) FROM ticks (before)':<48}{max_id * 1e6:>10.1f}")
    print(f"horizon / max(id): {horizon / max_id:.2f}x")
    return 0


def _measure(connection: Connection, calls: int, rounds: int) -> dict[str, float]:
    reads: dict[str, Callable[[], object]] = {
        "arrival_horizon": lambda: arrival_horizon(connection, ticks),
        "max(id)": lambda: connection.execute(text("SELECT max(id) FROM ticks")).scalar(),
    }
    best = dict.fromkeys(reads, float("inf"))
    for _ in range(rounds):
        for name, read in reads.items():
            best[name] = min(best[name], _per_call(read, calls))
    return best


if __name__ == "__main__":
    raise SystemExit(main())
