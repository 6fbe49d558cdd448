"""``mds backfill``: candles for every closed bucket of the stored ticks, and book metrics
and sentiment metrics for every stored snapshot and reading that has none.

Settings come from the configuration, as for ``mds run``: ``database.url``, the symbols
of each service, ``[services.candles]`` and ``[services.sentiment]``; the flags override
them (``--price-basis`` is ``services.candles.price_basis``, and so on).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from market_data_services.aggregators.candles import (
    PRICE_BASES,
    TIMEFRAMES,
    AggregatorService,
    BackfillProgress,
    SettingsMismatchError,
    all_stored_symbols,
)
from market_data_services.aggregators.dom import DOMAggregatorService, stored_dom_symbols
from market_data_services.aggregators.sentiment import (
    SentimentAggregatorService,
    stored_sentiment_symbols,
)
from market_data_services.app.catalog import CandleOptions, SentimentOptions
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
from market_data_services.timeutil import format_ms, parse_day_start, parse_timestamp_ms, parse_zone

#: The candle defaults --help shows: the configuration's.
_CANDLES = CandleOptions()
#: flag attribute -> (configuration key, flag as written)
_CANDLE_FLAGS = {
    "price_basis": ("services.candles.price_basis", "--price-basis"),
    "day_start": ("services.candles.day_start", "--day-start"),
    "lateness": ("services.candles.lateness_seconds", "--lateness"),
    "workers": ("services.candles.workers", "--workers"),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        choices=KINDS,
        help="what to build (repeat for several; default: all of candles, dom, sentiment)",
    )
    parser.add_argument(
        "--symbol",
        action="append",
        metavar="SYM",
        help="a symbol to backfill (repeat for several; default: the configured symbols of "
        "each service, else every symbol with stored data)",
    )
    parser.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="first moment to rebuild (ISO-8601 or epoch ms; default: the first tick)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        metavar="TIME",
        help="end of the window, exclusive (default: the last tick)",
    )
    parser.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help="zone of --from/--to when they carry no offset (default: UTC)",
    )
    parser.add_argument(
        "--price-basis",
        choices=PRICE_BASES,
        help=f"price of a tick (default: services.candles.price_basis, {_CANDLES.price_basis})",
    )
    parser.add_argument(
        "--day-start",
        metavar="'HH:MM ZONE'",
        help="when the daily candle opens, e.g. '17:00 America/New_York' "
        f"(default: services.candles.day_start, {_CANDLES.day_start})",
    )
    parser.add_argument(
        "--lateness",
        metavar="SECONDS",
        help="a bucket is built this long after it ends "
        f"(default: services.candles.lateness_seconds, {_CANDLES.lateness_seconds:g})",
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
        "--workers",
        metavar="N",
        help=f"symbols built in parallel (default: services.candles.workers, {_CANDLES.workers})",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    parser.set_defaults(handler=_backfill)


KINDS = ("candles", "dom", "sentiment")


def _flags(args: argparse.Namespace) -> list[Override]:
    """The backfill flags as the configuration keys they override."""
    out = [
        Override(key, getattr(args, attr), flag)
        for attr, (key, flag) in _CANDLE_FLAGS.items()
        if getattr(args, attr) is not None
    ]
    if args.rebuild:
        out.append(Override("services.candles.rebuild", True, "--rebuild"))
        out.append(Override("services.sentiment.rebuild", True, "--rebuild"))
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
    kinds = args.kind or list(KINDS)
    status = EXIT_OK
    if "candles" in kinds:
        status = _backfill_candles(args, config)
    for kind in ("dom", "sentiment"):
        if kind in kinds and status == EXIT_OK:
            status = _backfill_market(args, config, kind)
    return status


def _backfill_market(args: argparse.Namespace, config: Config, kind: str) -> int:
    """Book or sentiment metrics for every stored row without them, via ``catch_up``."""
    name = "mds backfill"
    try:
        symbols = _symbols(args, config, kind)
        options: SentimentOptions = config.services["sentiment"].options
        engine = open_engine(config)
    except ValueError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    registry = CollectorRegistry()
    what = {"dom": ("order books", "snapshots"), "sentiment": ("sentiment", "readings")}[kind]
    try:
        ensure_current(engine)
        stored = stored_dom_symbols(engine) if kind == "dom" else stored_sentiment_symbols(engine)
        symbols = stored if symbols is None else [s for s in symbols if s in stored]
        if not symbols:
            print(f"{what[0]}: no {what[1]} stored: nothing to backfill")
            return EXIT_OK
        service: DOMAggregatorService | SentimentAggregatorService
        if kind == "dom":
            service = DOMAggregatorService(engine, symbols=symbols, registry=registry)
        else:
            service = SentimentAggregatorService(
                engine, symbols=symbols, registry=registry, **options.service_kwargs()
            )
        service.catch_up()
    except (SettingsMismatchError, SchemaNotCurrentError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        print(f"{name}: database error: {describe_db_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        engine.dispose()
    counter = "mds_dom_snapshots_processed" if kind == "dom" else "mds_sentiment_readings_processed"
    done = sum(
        sample.value
        for metric in registry.collect()
        if metric.name == counter
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    noun = "symbol" if len(symbols) == 1 else "symbols"
    print(
        f"{what[0]}: {len(symbols)} {noun}, {int(done):,} new {what[1]} computed "
        f"in {time.monotonic() - started:.1f} s"
    )
    return EXIT_OK


def _backfill_candles(args: argparse.Namespace, config: Config) -> int:
    name = "mds backfill"
    options: CandleOptions = config.services["candles"].options
    try:
        zone = parse_zone(args.tz)
        start = None if args.start is None else parse_timestamp_ms(args.start, zone)
        end = None if args.end is None else parse_timestamp_ms(args.end, zone)
        day_start = parse_day_start(options.day_start)
        symbols = _symbols(args, config, "candles")
        engine = open_engine(config)
    except ValueError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    try:
        ensure_current(engine)
        if symbols is None:
            symbols = all_stored_symbols(engine)
        if not symbols:
            print("no ticks stored: nothing to backfill (load some with `mds ingest ticks`)")
            return EXIT_OK
        service = AggregatorService(
            engine,
            symbols=symbols,
            day_start=day_start,
            price_basis=options.price_basis,
            lateness_seconds=options.lateness_seconds,
            rebuild=options.rebuild,
            workers=options.workers,
            registry=CollectorRegistry(),
        )
        bar = ProgressBar(len(symbols), unit="symbols", enabled=False if args.no_progress else None)
        lock = threading.Lock()  # the callback runs on the worker threads
        finished: set[str] = set()

        def progress(event: BackfillProgress) -> None:
            with lock:
                if event.steps_done == event.steps_total:
                    finished.add(event.symbol)
                bar.update(
                    len(finished),
                    f"{event.symbol} {format_ms(event.window_start_ms)[:10]} "
                    f"({event.steps_done}/{event.steps_total})",
                )

        try:
            report = service.backfill(start_ms=start, end_ms=end, progress=progress)
        finally:
            bar.close()
    except (SettingsMismatchError, SchemaNotCurrentError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        print(f"{name}: database error: {describe_db_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        engine.dispose()
    elapsed = time.monotonic() - started
    per_tf = ", ".join(f"{tf} {report.candles[tf]:,}" for tf in TIMEFRAMES)
    noun = "symbol" if len(symbols) == 1 else "symbols"
    print(
        f"{len(symbols)} {noun}, {report.minutes_built:,} minutes scanned, "
        f"{report.candles_written:,} candles written ({per_tf}) in {elapsed:.1f} s; "
        f"price basis {options.price_basis}, day start {day_start}"
    )
    return EXIT_OK
