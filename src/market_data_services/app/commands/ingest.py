"""``mds ingest ticks PATH... --symbol SYM``: load tick files into the database."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from market_data_services.aggregators.ticks import (
    LAYOUTS,
    IngestProgress,
    NotATickFileError,
    ingest_ticks,
    inspect_tick_files,
)
from market_data_services.app.commands._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_db_option,
    database_url,
)
from market_data_services.app.commands._progress import ProgressBar
from market_data_services.app.commands.db import describe_db_error
from market_data_services.storage.engine import create_engine
from market_data_services.storage.migrate import SchemaNotCurrentError, ensure_current

#: How many rejected rows are printed (all are counted).
SHOWN_REJECTIONS = 10


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("ingest", help="load raw market data into the database")
    kinds = parser.add_subparsers(dest="ingest_kind", metavar="KIND")
    ticks = kinds.add_parser(
        "ticks",
        help="load tick quote files (.csv, .csv.gz, single-file .zip; files or directories)",
        description=(
            "Load tick quotes. Layouts: 'plain' has a header timestamp,bid,ask[,volume]"
            "[,symbol] with ISO-8601 or epoch-ms times; 'lean' is LEAN's tick quote files "
            "(ms_since_midnight,bid,ask, date from the YYYYMMDD_ file name). Rows that fail "
            "validation are reported with file and line and skipped; the rest are kept."
        ),
    )
    ticks.add_argument("paths", nargs="+", metavar="PATH", help="tick files or directories")
    ticks.add_argument(
        "--symbol",
        metavar="SYM",
        help="the symbol of the ticks (required unless the files have a symbol column)",
    )
    ticks.add_argument(
        "--layout",
        choices=LAYOUTS,
        help="force the layout instead of telling it from each file's first line",
    )
    ticks.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help="zone of times without an offset: IANA name or fixed offset like UTC-05:00 "
        "(default: UTC)",
    )
    ticks.add_argument(
        "--reject-crossed",
        action="store_true",
        help="reject crossed quotes (ask below bid) instead of keeping and counting them",
    )
    ticks.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    add_db_option(ticks)
    ticks.set_defaults(handler=_ingest_ticks)
    parser.set_defaults(handler=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _ingest_ticks(args: argparse.Namespace) -> int:
    name = "mds ingest ticks"
    try:
        files = inspect_tick_files(args.paths, layout=args.layout)
        engine = create_engine(database_url(args))
    except (NotATickFileError, FileNotFoundError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not files:
        print(f"{name}: no tick files found under {' '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    bar = ProgressBar(len(files), unit="files", enabled=False if args.no_progress else None)

    def progress(event: IngestProgress) -> None:
        bar.update(event.files_done, f"{event.rows:,} rows  {event.path.rsplit('/', 1)[-1]}")

    try:
        ensure_current(engine)
        report = ingest_ticks(
            engine,
            [f.path for f in files],
            symbol=args.symbol,
            tz=args.tz,
            layout=args.layout,
            reject_crossed=args.reject_crossed,
            progress=progress,
        )
    except (NotATickFileError, ValueError, SchemaNotCurrentError) as exc:
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
    for rejection in report.rejections[:SHOWN_REJECTIONS]:
        print(f"rejected: {rejection}", file=sys.stderr)
    if report.rejected > SHOWN_REJECTIONS:
        print(f"... and {report.rejected - SHOWN_REJECTIONS:,} more rejected", file=sys.stderr)
    print(f"{report.files} files, {report.rows:,} rows: {report.summary()}")
    if report.rejected_by_reason:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(report.rejected_by_reason.items()))
        print(f"rejected by reason: {reasons}")
    return EXIT_OK
