"""How many symbols the candle service sustains at a 60 s interval, with 1 and 3 instances.

"Sustains" means an iteration takes at most half the interval (30 s). The steady state of
a 60 s interval is measured, not guessed: every round the feed writes one new minute of
ticks (one a second) for every symbol, then every instance runs one iteration
(``run_once()``: the symbol claim on PostgreSQL included) at the same time, each in its
own process, as ``mds run`` instances would. From the median iteration time and the
symbols the instance owned, the cost per symbol; 30 s divided by it is the symbols one
instance sustains. This extrapolates from ``--symbols`` (default 300) linearly: the
incremental pass reads and writes per symbol, so its cost grows with the symbol count.

With three instances the database, the feed and the three processes share the machine
(two cores here), so the per-symbol cost under contention is what is measured; the
total is the three instances' sum.

Usage: python benchmarks/scale.py [--symbols N] [--rounds R] [--url ADMIN_URL]
ADMIN_URL (default $MDS_TEST_DATABASE_URL, else postgresql+psycopg://postgres@127.0.0.1:5432/test)
names a server where a scratch database is created and dropped.
"""

# ruff: noqa: PLC0415 (children import what they need)

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

INTERVAL_SECONDS = 60.0
BUDGET_SECONDS = INTERVAL_SECONDS / 2
DEFAULT_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def instance(url: str, symbols: list[str], pipe: Connection) -> None:
    """One ``mds run``'s candle service: an iteration per "go", its time and share back."""
    from prometheus_client import CollectorRegistry

    from market_data_services.aggregators.candles import AggregatorService
    from market_data_services.storage import create_engine
    from market_data_services.storage.ownership import SymbolOwnership

    engine = create_engine(url)
    ownership = SymbolOwnership(engine, "AggregatorService")
    service = AggregatorService(
        engine,
        symbols=symbols,
        interval_seconds=INTERVAL_SECONDS,
        registry=CollectorRegistry(),
        ownership=ownership,
        enable_circuit_breaker=False,
    )
    while pipe.recv() == "go":
        started = time.perf_counter()
        outcome = service.run_once()
        elapsed = time.perf_counter() - started
        pipe.send((outcome.value, elapsed, len(service.owned_symbols())))
    ownership.close()
    engine.dispose()


def write_minute(engine: Any, symbols: list[str], minute_ms: int) -> None:
    from market_data_services.ingest import Tick, write_ticks

    write_ticks(
        engine,
        [
            Tick(symbol, minute_ms + s * 1000, 1.0 + i / 1000 + s / 1e5, 1.0002 + i / 1000)
            for i, symbol in enumerate(symbols)
            for s in range(60)
        ],
        numbering="batch",
    )


def measure(url: str, symbols: list[str], count: int, rounds: int) -> dict[str, float]:
    """Run ``count`` instances for ``rounds`` measured rounds after three warm-up rounds
    (the first builds the history; the next let the instances settle their shares)."""
    from market_data_services.storage import create_engine

    engine = create_engine(url)
    now_ms = int(time.time() * 1000)
    warm_up = 3
    first = now_ms - now_ms % 60_000 - (warm_up + rounds + 2) * 60_000
    context = mp.get_context("spawn")
    pipes, processes = [], []
    for _ in range(count):
        parent, child = context.Pipe()
        process = context.Process(target=instance, args=(url, symbols, child))
        process.start()
        pipes.append(parent)
        processes.append(process)
    per_symbol: list[float] = []
    iteration: list[float] = []
    owned_seen: list[int] = []
    try:
        for number in range(warm_up + rounds):
            write_minute(engine, symbols, first + number * 60_000)
            for pipe in pipes:
                pipe.send("go")
            answers = [pipe.recv() for pipe in pipes]
            failed = [a for a in answers if a[0] != "succeeded"]
            if failed:
                raise RuntimeError(f"an iteration did not succeed: {failed}")
            if number < warm_up:
                continue
            owned = [a[2] for a in answers]
            if sum(owned) != len(symbols):
                raise RuntimeError(f"instances own {owned} of {len(symbols)} symbols")
            for _, elapsed, share in answers:
                iteration.append(elapsed)
                per_symbol.append(elapsed / share)
            owned_seen = owned
    finally:
        for pipe in pipes:
            pipe.send("stop")
        for process in processes:
            process.join(30)
        engine.dispose()
    cost = statistics.median(per_symbol)
    return {
        "instances": count,
        "owned": max(owned_seen),
        "iteration_s": statistics.median(iteration),
        "per_symbol_ms": cost * 1000,
        "sustained_per_instance": BUDGET_SECONDS / cost,
        "sustained_total": count * BUDGET_SECONDS / cost,
    }


def scratch_database(admin_url: str) -> tuple[Any, str]:
    import sqlalchemy
    from sqlalchemy.engine import make_url

    from market_data_services.storage import upgrade
    from market_data_services.storage.engine import create_engine, normalise_url

    admin = sqlalchemy.create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    name = f"mds_bench_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(str(admin.url.render_as_string(hide_password=False))).set(database=name)
    rendered = url.render_as_string(hide_password=False)
    engine = create_engine(rendered)
    upgrade(engine)
    engine.dispose()
    return admin, name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", default=os.environ.get("MDS_TEST_DATABASE_URL") or DEFAULT_ADMIN)
    args = parser.parse_args()
    symbols = [f"B{i:04d}/USD" for i in range(args.symbols)]
    results = []
    for count in (1, 3):
        admin, name = scratch_database(args.url)
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        try:
            results.append(measure(url, symbols, count, args.rounds))
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.dispose()
    print(
        f"# scale.py  python {sys.version.split()[0]}  cores={os.cpu_count()}  "
        f"symbols={args.symbols}  rounds={args.rounds} (median)  interval={INTERVAL_SECONDS:g}s"
    )
    print("instances  owned each  iteration s  ms/symbol  sustained per instance  sustained total")
    for r in results:
        print(
            f"{r['instances']:>9}  {r['owned']:>10}  {r['iteration_s']:>11.3f}  "
            f"{r['per_symbol_ms']:>9.2f}  {r['sustained_per_instance']:>22,.0f}  "
            f"{r['sustained_total']:>15,.0f}"
        )
    one, three = results
    print(
        f"\n3 instances / 1 instance, symbols sustained: "
        f"{three['sustained_total'] / one['sustained_total']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
