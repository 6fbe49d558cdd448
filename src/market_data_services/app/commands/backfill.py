"""``mds backfill``: the stored history of every service the catalog says how to backfill:
candles for every closed bucket of the stored ticks, book metrics and sentiment metrics
for every stored snapshot and reading that has none.

Settings come from the configuration, as for ``mds run``: ``database.url``, the symbols
of each service, ``[services.<name>]``; the flags override them (``--price-basis`` is
``services.candles.price_basis``, and so on). Each catalog entry's ``Backfill`` adds its
flags, lists its stored symbols, does the work and writes its summary line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from market_data_services.aggregators.base import SettingsMismatchError
from market_data_services.app.catalog import (
    SERVICES,
    BackfillRequest,
    PluginError,
    ServiceContext,
    ServiceEntry,
    catalog,
)
from market_data_services.app.commands._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_db_option,
    open_engine,
)
from market_data_services.app.commands._options import add_config_file_option, load_config
from market_data_services.app.commands._progress import ProgressBar
from market_data_services.app.commands.db import describe_db_error
from market_data_services.app.config import Config, Override
from market_data_services.market.symbols import check_symbol
from market_data_services.storage.migrate import SchemaNotCurrentError, ensure_current
from market_data_services.storage.ownership import symbols_for_backfill


def _backfillable() -> dict[str, ServiceEntry]:
    """The catalog's entries that say how to backfill them, in catalog order.

    With a broken plugin, the built-in ones: the command then reports the plugin's error
    when it reads the configuration (exit status 2), instead of ``mds`` failing whole."""
    try:
        entries = catalog()
    except PluginError:
        entries = SERVICES
    return {name: entry for name, entry in entries.items() if entry.backfill is not None}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kinds = _backfillable()
    parser = subparsers.add_parser(
        "backfill",
        help="build candles, book metrics and sentiment metrics for the stored history",
        description=(
            "Build 1m, 5m, 15m, 30m, 1h, 4h and 1d candles from the stored ticks, book "
            "metrics for every stored order-book snapshot and sentiment metrics for every "
            "stored reading, through the same code as the live services. Idempotent: run it "
            "again and the tables stay the same. Settings come from the configuration, as "
            "for mds run (--config FILE or $MDS_CONFIG, then MDS_* variables): database.url, "
            "the symbols, [services.candles] day_start, price_basis, lateness_seconds, "
            "workers and rebuild, and [services.sentiment]; the flags below override them. "
            "--from/--to, --price-basis and --day-start concern candles."
        ),
    )
    add_config_file_option(parser)
    add_db_option(parser)
    parser.add_argument(
        "--kind",
        action="append",
        choices=list(kinds),
        help=f"what to build (repeat for several; default: all of {', '.join(kinds)})",
    )
    parser.add_argument(
        "--symbol",
        action="append",
        metavar="SYM",
        help="a symbol to backfill (repeat for several; default: the configured symbols of "
        "each service, else every symbol with stored data)",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        default=None,
        help="when the stored candles use another price basis or day start (or the stored "
        "sentiment metrics other settings), delete and rebuild them all (sets "
        "services.candles.rebuild and services.sentiment.rebuild)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    for entry in kinds.values():
        assert entry.backfill is not None
        if entry.backfill.add_arguments is not None:
            entry.backfill.add_arguments(parser)
    parser.set_defaults(handler=_backfill)


def _flags(args: argparse.Namespace) -> list[Override]:
    """The backfill flags as the configuration keys they override."""
    out: list[Override] = []
    for name, entry in _backfillable().items():
        assert entry.backfill is not None
        if entry.backfill.overrides is not None:
            out.extend(entry.backfill.overrides(args))
        fields = () if entry.options is None else dataclasses.fields(entry.options)
        if args.rebuild and any(f.name == "rebuild" for f in fields):
            out.append(Override(f"services.{name}.rebuild", True, "--rebuild"))
    return out


def _symbols(args: argparse.Namespace, config: Config, service: str) -> list[str] | None:
    """--symbol, else the service's configured symbols, else None (every stored one)."""
    if args.symbol is not None:
        return [check_symbol(s) for s in args.symbol]
    configured = config.symbols_for(service)
    return list(configured) if configured else None


def _backfill(args: argparse.Namespace) -> int:
    config = load_config("mds backfill", args, _flags(args))
    if config is None:
        return EXIT_USAGE
    entries = _backfillable()
    status = EXIT_OK
    for name in args.kind or list(entries):
        status = _backfill_one(args, config, name, entries[name])
        if status != EXIT_OK:
            break
    return status


def _backfill_one(args: argparse.Namespace, config: Config, name: str, entry: ServiceEntry) -> int:
    """Build one service for the symbols to do and run its entry's backfill."""
    command = "mds backfill"
    backfill = entry.backfill
    assert backfill is not None
    try:
        symbols = _symbols(args, config, name)
        engine = open_engine(config)
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    registry = CollectorRegistry()
    try:
        ensure_current(engine)
        stored = backfill.stored_symbols(engine)
        symbols = stored if symbols is None else [s for s in symbols if s in stored]
        if not symbols:
            print(backfill.nothing_stored)
            return EXIT_OK
        chosen = tuple(symbols)
        settings = config.services[name]
        service = entry.factory(
            ServiceContext(
                name=name,
                service_name=entry.service_name,
                engine=engine,
                config=settings,
                registry=registry,
                symbol_provider=lambda: chosen,
                symbol_cache_ttl_seconds=0.0,
            )
        )

        def progress_bar(total: int, unit: str) -> Any:
            return ProgressBar(total, unit=unit, enabled=False if args.no_progress else None)

        def waiting(count: int) -> None:
            print(
                f"{command}: waiting for running instances to hand over {count} "
                f"{name} symbol(s) (they do at their next iteration)",
                file=sys.stderr,
            )

        # Never beside a running instance on the same symbol: they let it go meanwhile.
        with symbols_for_backfill(engine, entry.service_name, symbols, on_wait=waiting):
            line = backfill.run(
                BackfillRequest(
                    service=service,
                    symbols=symbols,
                    registry=registry,
                    args=args,
                    options=settings.options,
                    started=started,
                    progress_bar=progress_bar,
                )
            )
    except (SettingsMismatchError, SchemaNotCurrentError, ValueError) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        print(f"{command}: database error: {describe_db_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        engine.dispose()
    print(line)
    return EXIT_OK
