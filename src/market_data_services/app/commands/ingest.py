"""``mds ingest ticks|dom|sentiment PATH...``: load raw market data into the database.

The three kinds share one flow: find and inspect every file first, then load the files
that passed with a progress bar on a terminal, list the failed files and the first
rejected rows with file and line, and print a summary. A file that fails (not of the
kind, a first time before 1990 or more than an hour ahead in the time unit read, a FIFO or
device, unreadable, or damaged part way: corrupt compression, bad bytes, a CSV error) is
reported with its file and line and counted in ``mds_ingest_files_failed_total``; the
other files go on, and the rows of a damaged file before the damage are kept.

Exit codes (``EXIT_CODES``): 0 every row of every file accepted; 1 some rows or files
rejected, the rest loaded; 2 nothing usable (every file failed, or every row was
rejected) or a usage error (a bad option, a path that does not exist, no files found).
A database error exits 1.

The database, the ingest policy and the limits on one row come from the configuration
(``database.url``, ``ingest.reject_crossed``, ``ingest.max_line_bytes``,
``ingest.max_field_chars``, ``ingest.max_book_levels``), as for every command; ``--db``
and ``--reject-crossed`` override the first two.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    BadFileError,
    IngestProgress,
    IngestReport,
    ReadLimits,
    WrongFileKindError,
    dom,
    sentiment,
    ticks,
)
from market_data_services.ingest.files import reading_with
from market_data_services.ingest.layouts import LayoutPluginError, layouts, load_plugins
from market_data_services.ingest.pipeline import count_file_failure
from market_data_services.storage.migrate import SchemaNotCurrentError, ensure_current
from market_data_services.timeutil import TIME_UNITS

#: How many rejected rows are printed (all are counted).
SHOWN_REJECTIONS = 10
#: The exit codes, for --help.
EXIT_CODES = (
    "Exit codes: 0 all rows of all files accepted; 1 some rows or files rejected (the rest "
    "loaded, rows before a damaged part of a file too); 2 nothing usable (every file "
    "failed or every row was rejected) or a usage error."
)


@dataclass(frozen=True, kw_only=True)
class _Kind:
    """What ``mds ingest KIND`` says and does beyond its layouts, which the registry lists."""

    name: str  # the subcommand and the layouts' kind
    noun: str  # "no {noun} files found"
    help: str
    summary: str  # the description before the layouts
    after: str  # the description after them
    paths_help: str
    metavar: str = "PATH"
    told_from: str = "first line"
    zone_help: str = "zone of times without an offset"
    symbol_help: str
    symbols: bool = True  # --symbol repeats (ingest's ``symbols=``) or names one (``symbol=``)
    crossed_help: str | None = None  # --reject-crossed, where the kind has crossed states
    source_help: str | None = None  # --source, where the kind has sources
    inspect: Callable[..., Sequence[Any]]
    ingest: Callable[..., IngestReport]

    def load(
        self,
        args: argparse.Namespace,
        engine: Any,
        paths: list[Any],
        progress: Callable[[IngestProgress], None],
        config: Config,
    ) -> IngestReport:
        options: dict[str, Any] = {"symbols" if self.symbols else "symbol": args.symbol}
        if self.crossed_help is not None:
            options["reject_crossed"] = config.ingest.reject_crossed
        if self.source_help is not None:
            options["source"] = args.source
        return self.ingest(
            engine,
            paths,
            limits=read_limits(config),
            tz=args.tz,
            layout=args.layout,
            time_unit=args.time_unit,
            progress=progress,
            **options,
        )


_KINDS = (
    _Kind(
        name="ticks",
        noun="tick",
        help="load tick quote files (.csv, .csv.gz, single-file .zip; files or directories)",
        summary="Load tick quotes.",
        after="Rows that fail validation are reported with file and line and skipped; the "
        "rest are kept.",
        paths_help="tick files or directories",
        symbol_help="the symbol of the ticks (required unless the files have a symbol column)",
        symbols=False,
        crossed_help="reject crossed quotes (ask below bid) instead of keeping and counting "
        "them (sets ingest.reject_crossed; default: false)",
        inspect=ticks.inspect_tick_files,
        ingest=ticks.ingest_ticks,
    ),
    _Kind(
        name="dom",
        noun="order-book",
        help="load order-book snapshot files (JSON lines, Tardis, Bybit, Binance depth)",
        summary="Load order-book (depth of market) snapshots.",
        after="Books that fail validation (empty, one-sided, NaN or non-positive values, "
        "unsorted or repeated levels) are reported with file and line and skipped; crossed "
        "books are kept and counted.",
        paths_help="order-book files or directories",
        zone_help="zone of JSON-lines ISO times without an offset",
        symbol_help="load only this symbol (repeat for more); books of others are rejected",
        crossed_help="reject crossed books (best ask below best bid) instead of keeping them "
        "(sets ingest.reject_crossed; default: false)",
        inspect=dom.inspect_dom_files,
        ingest=dom.ingest_dom,
    ),
    _Kind(
        name="sentiment",
        noun="sentiment",
        help="load retail sentiment readings (CSV, or IG client sentiment exports)",
        summary="Load sentiment readings: the share of clients long and short.",
        after="Readings outside 0..100, or whose long and short do not add up to 100, are "
        "reported with file and line and skipped.",
        paths_help="sentiment files or directories",
        metavar="FILE",
        told_from="header",
        symbol_help="load only this symbol (repeat for more); readings of others are rejected",
        source_help="the source of readings without a source column (default: 'ig' for IG "
        "exports, else empty)",
        inspect=sentiment.inspect_sentiment_files,
        ingest=sentiment.ingest_sentiment,
    ),
)


def read_limits(config: Config) -> ReadLimits:
    """The limits on one row that ``[ingest]`` sets."""
    return ReadLimits(
        max_line_bytes=config.ingest.max_line_bytes,
        max_field_chars=config.ingest.max_field_chars,
        max_book_levels=config.ingest.max_book_levels,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("ingest", help="load raw market data into the database")
    problems = _load_layout_plugins()
    kinds = parser.add_subparsers(dest="ingest_kind", metavar="KIND")
    for kind in _KINDS:
        _register_kind(kinds, kind, problems)
    parser.set_defaults(handler=lambda _args: _usage(parser))


def _load_layout_plugins() -> list[str]:
    """Register the installed layout plugins, so --layout and --help list them; the
    problems, for the command to report."""
    try:
        load_plugins()
    except LayoutPluginError as exc:
        return [str(exc)]
    return []


def _register_kind(
    kinds: argparse._SubParsersAction[argparse.ArgumentParser], kind: _Kind, problems: list[str]
) -> None:
    registered = layouts(kind.name)
    described = "; ".join(f"'{layout.name}': {layout.description}" for layout in registered)
    parser = kinds.add_parser(
        kind.name,
        help=kind.help,
        description=f"{kind.summary} Layouts: {described}. {kind.after} {EXIT_CODES}",
    )
    parser.add_argument("paths", nargs="+", metavar=kind.metavar, help=kind.paths_help)
    parser.add_argument(
        "--symbol",
        metavar="SYM",
        action="append" if kind.symbols else "store",
        help=kind.symbol_help,
    )
    parser.add_argument(
        "--layout",
        choices=[layout.name for layout in registered],
        help=f"force the layout instead of telling it from each file's {kind.told_from}",
    )
    if kind.crossed_help is not None:
        parser.add_argument(
            "--reject-crossed", action="store_true", default=None, help=kind.crossed_help
        )
    if kind.source_help is not None:
        parser.add_argument("--source", metavar="NAME", help=kind.source_help)
    parser.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help=f"{kind.zone_help}: IANA name or fixed offset like UTC-05:00 (default: UTC)",
    )
    parser.add_argument(
        "--time-unit",
        choices=TIME_UNITS,
        default="auto",
        help="unit of times written as epoch numbers; auto (default) tells s, ms, us or ns "
        "from the size of each file's first one. A file whose first time is before 1990 "
        "or more than an hour ahead in that unit is refused (the others are loaded)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    add_config_file_option(parser)
    add_db_option(parser)
    parser.set_defaults(handler=functools.partial(_run, kind, problems))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _run(kind: _Kind, problems: list[str], args: argparse.Namespace) -> int:
    """Inspect, load, report; the exit codes of every ``mds ingest`` kind."""
    name = f"mds ingest {kind.name}"
    for problem in problems:
        print(f"{name}: {problem}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    flags: list[Override] = []
    if getattr(args, "reject_crossed", None):
        flags.append(Override("ingest.reject_crossed", True, "--reject-crossed"))
    config = load_config(name, args, flags)
    if config is None:
        return EXIT_USAGE
    failures: list[BadFileError] = []
    try:
        with reading_with(read_limits(config)):  # inspection skips the lines reading will
            files = kind.inspect(
                args.paths, layout=args.layout, time_unit=args.time_unit, failures=failures
            )
        engine = open_engine(config)
    except (WrongFileKindError, FileNotFoundError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for failure in failures:
        count_file_failure(failure, kind.name)
    if not files:
        engine.dispose()
        _print_failures(failures)
        if failures:
            print(f"{name}: no usable {kind.noun} files", file=sys.stderr)
        else:
            where = " ".join(args.paths)
            print(f"{name}: no {kind.noun} files found under {where}", file=sys.stderr)
        return EXIT_USAGE
    bar = ProgressBar(len(files), unit="files", enabled=False if args.no_progress else None)

    def progress(event: IngestProgress) -> None:
        bar.update(event.files_done, f"{event.rows:,} rows  {event.path.rsplit('/', 1)[-1]}")

    try:
        ensure_current(engine)
        report = kind.load(args, engine, [f.path for f in files], progress, config)
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
    report.failed_files[:0] = failures  # those found at inspection first
    _print_report(report)
    if not report.failed_files and not report.rejected:
        return EXIT_OK
    return EXIT_FAILURE if report.accepted else EXIT_USAGE


def _print_failures(failures: Sequence[BadFileError]) -> None:
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)


def _print_report(report: IngestReport) -> None:
    _print_failures(report.failed_files)
    for rejection in report.rejections[:SHOWN_REJECTIONS]:
        print(f"rejected: {rejection}", file=sys.stderr)
    if report.rejected > SHOWN_REJECTIONS:
        print(f"... and {report.rejected - SHOWN_REJECTIONS:,} more rejected", file=sys.stderr)
    print(f"{report.files} files, {report.rows:,} rows: {report.summary()}")
    if report.rejected_by_reason:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(report.rejected_by_reason.items()))
        print(f"rejected by reason: {reasons}")
