"""``mds ingest ticks|dom|sentiment PATH...``: load raw market data into the database.

The three kinds share one flow: find and inspect every file first (a file that is not of
the kind, or whose first time is before 1990 or more than an hour ahead in the time unit
read, is a usage error, exit 2, before anything is written), then load them with a
progress bar on a terminal, list the first rejected rows with file and line, and print a
summary (exit 0, also when some rows were rejected).

The database and the ingest policy come from the configuration (``database.url``,
``ingest.reject_crossed``), as for every command; ``--db`` and ``--reject-crossed``
override them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

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
from market_data_services.ingest import (
    IngestProgress,
    IngestReport,
    WrongFileKindError,
    dom,
    sentiment,
    ticks,
)
from market_data_services.storage.migrate import SchemaNotCurrentError, ensure_current
from market_data_services.timeutil import TIME_UNITS

#: How many rejected rows are printed (all are counted).
SHOWN_REJECTIONS = 10


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("ingest", help="load raw market data into the database")
    kinds = parser.add_subparsers(dest="ingest_kind", metavar="KIND")
    _register_ticks(kinds)
    _register_dom(kinds)
    _register_sentiment(kinds)
    parser.set_defaults(handler=lambda _args: _usage(parser))


def _common_options(parser: argparse.ArgumentParser, *, zone_help: str) -> None:
    parser.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help=f"{zone_help}: IANA name or fixed offset like UTC-05:00 (default: UTC)",
    )
    parser.add_argument(
        "--time-unit",
        choices=TIME_UNITS,
        default="auto",
        help="unit of times written as epoch numbers; auto (default) tells s, ms, us or ns "
        "from the size of each file's first one. A file whose first time is before 1990 "
        "or more than an hour ahead in that unit is refused (exit 2)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    add_config_file_option(parser)
    add_db_option(parser)


def _register_ticks(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = kinds.add_parser(
        "ticks",
        help="load tick quote files (.csv, .csv.gz, single-file .zip; files or directories)",
        description=(
            "Load tick quotes. Layouts: 'plain' has a header timestamp,bid,ask[,volume]"
            "[,symbol] with ISO-8601 or epoch times (see --time-unit); 'lean' is LEAN's tick "
            "quote files "
            "(ms_since_midnight,bid,ask, date from the YYYYMMDD_ file name). Rows that fail "
            "validation are reported with file and line and skipped; the rest are kept."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="tick files or directories")
    parser.add_argument(
        "--symbol",
        metavar="SYM",
        help="the symbol of the ticks (required unless the files have a symbol column)",
    )
    parser.add_argument(
        "--layout",
        choices=ticks.LAYOUTS,
        help="force the layout instead of telling it from each file's first line",
    )
    parser.add_argument(
        "--reject-crossed",
        action="store_true",
        default=None,
        help="reject crossed quotes (ask below bid) instead of keeping and counting them "
        "(sets ingest.reject_crossed; default: false)",
    )
    _common_options(parser, zone_help="zone of times without an offset")
    parser.set_defaults(handler=_ingest_ticks)


def _register_dom(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = kinds.add_parser(
        "dom",
        help="load order-book snapshot files (JSON lines, Tardis, Bybit, Binance depth)",
        description=(
            "Load order-book (depth of market) snapshots. Layouts: 'jsonl' is one snapshot "
            'a line, {"symbol", "ts", "bids": [[price, size], ...], "asks": [...]}; '
            "'tardis' is Tardis book_snapshot_N CSV; 'bybit' is Bybit orderbook websocket "
            "lines (a snapshot, then deltas; the book is rebuilt and each message stored); "
            "'binance' is Binance depth CSV (one level a row). Books that fail validation "
            "(empty, one-sided, NaN or non-positive values, unsorted or repeated levels) are "
            "reported with file and line and skipped; crossed books are kept and counted."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="order-book files or directories")
    parser.add_argument(
        "--symbol",
        metavar="SYM",
        action="append",
        help="load only this symbol (repeat for more); books of others are rejected",
    )
    parser.add_argument(
        "--layout",
        choices=dom.LAYOUTS,
        help="force the layout instead of telling it from each file's first line",
    )
    parser.add_argument(
        "--reject-crossed",
        action="store_true",
        default=None,
        help="reject crossed books (best ask below best bid) instead of keeping them "
        "(sets ingest.reject_crossed; default: false)",
    )
    _common_options(parser, zone_help="zone of JSON-lines ISO times without an offset")
    parser.set_defaults(handler=_ingest_dom)


def _register_sentiment(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = kinds.add_parser(
        "sentiment",
        help="load retail sentiment readings (CSV, or IG client sentiment exports)",
        description=(
            "Load sentiment readings: the share of clients long and short. Layouts: "
            "'plain' has a header timestamp,symbol,long_pct,short_pct[,source] (percent "
            "0..100); 'ig' is an IG client sentiment export: a Date column (in --tz), then "
            "one column per market holding the percent long (EURUSD is read as EUR/USD). "
            "Readings outside 0..100, or whose long and short do not add up to 100, are "
            "reported with file and line and skipped."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="FILE", help="sentiment files or directories")
    parser.add_argument(
        "--symbol",
        metavar="SYM",
        action="append",
        help="load only this symbol (repeat for more); readings of others are rejected",
    )
    parser.add_argument(
        "--layout",
        choices=sentiment.LAYOUTS,
        help="force the layout instead of telling it from each file's header",
    )
    parser.add_argument(
        "--source",
        metavar="NAME",
        help="the source of readings without a source column (default: 'ig' for IG "
        "exports, else empty)",
    )
    _common_options(parser, zone_help="zone of times without an offset")
    parser.set_defaults(handler=_ingest_sentiment)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _ingest_ticks(args: argparse.Namespace) -> int:
    return _run(
        "mds ingest ticks",
        args,
        kind="tick",
        inspect=lambda: ticks.inspect_tick_files(
            args.paths, layout=args.layout, time_unit=args.time_unit
        ),
        load=lambda engine, paths, progress, config: ticks.ingest_ticks(
            engine,
            paths,
            symbol=args.symbol,
            tz=args.tz,
            layout=args.layout,
            time_unit=args.time_unit,
            reject_crossed=config.ingest.reject_crossed,
            progress=progress,
        ),
    )


def _ingest_dom(args: argparse.Namespace) -> int:
    return _run(
        "mds ingest dom",
        args,
        kind="order-book",
        inspect=lambda: dom.inspect_dom_files(
            args.paths, layout=args.layout, time_unit=args.time_unit
        ),
        load=lambda engine, paths, progress, config: dom.ingest_dom(
            engine,
            paths,
            symbols=args.symbol,
            tz=args.tz,
            layout=args.layout,
            time_unit=args.time_unit,
            reject_crossed=config.ingest.reject_crossed,
            progress=progress,
        ),
    )


def _ingest_sentiment(args: argparse.Namespace) -> int:
    return _run(
        "mds ingest sentiment",
        args,
        kind="sentiment",
        inspect=lambda: sentiment.inspect_sentiment_files(
            args.paths, layout=args.layout, time_unit=args.time_unit
        ),
        load=lambda engine, paths, progress, config: sentiment.ingest_sentiment(
            engine,
            paths,
            symbols=args.symbol,
            tz=args.tz,
            layout=args.layout,
            time_unit=args.time_unit,
            source=args.source,
            progress=progress,
        ),
    )


def _run(
    name: str,
    args: argparse.Namespace,
    *,
    kind: str,
    inspect: Callable[[], Sequence[Any]],
    load: Callable[[Any, list[Any], Callable[[IngestProgress], None], Config], IngestReport],
) -> int:
    """Inspect, load, report; the exit codes of every ``mds ingest`` kind."""
    flags: list[Override] = []
    if getattr(args, "reject_crossed", None):
        flags.append(Override("ingest.reject_crossed", True, "--reject-crossed"))
    config = load_config(name, args, flags)
    if config is None:
        return EXIT_USAGE
    try:
        files = inspect()
        engine = open_engine(config)
    except (WrongFileKindError, FileNotFoundError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not files:
        print(f"{name}: no {kind} files found under {' '.join(args.paths)}", file=sys.stderr)
        engine.dispose()
        return EXIT_USAGE
    bar = ProgressBar(len(files), unit="files", enabled=False if args.no_progress else None)

    def progress(event: IngestProgress) -> None:
        bar.update(event.files_done, f"{event.rows:,} rows  {event.path.rsplit('/', 1)[-1]}")

    try:
        ensure_current(engine)
        report = load(engine, [f.path for f in files], progress, config)
    except (WrongFileKindError, ValueError, SchemaNotCurrentError) as exc:
        bar.close()
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        bar.close()
        print(f"{name}: database error: {describe_db_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        engine.dispose()
    bar.close()
    _print_report(report)
    return EXIT_OK


def _print_report(report: IngestReport) -> None:
    for rejection in report.rejections[:SHOWN_REJECTIONS]:
        print(f"rejected: {rejection}", file=sys.stderr)
    if report.rejected > SHOWN_REJECTIONS:
        print(f"... and {report.rejected - SHOWN_REJECTIONS:,} more rejected", file=sys.stderr)
    print(f"{report.files} files, {report.rows:,} rows: {report.summary()}")
    if report.rejected_by_reason:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(report.rejected_by_reason.items()))
        print(f"rejected by reason: {reasons}")
