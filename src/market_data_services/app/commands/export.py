"""``mds export candles|book|sentiment``: derived data of one symbol to CSV, JSON lines
or Parquet, on a file or standard output.

Rows are read in pages (``storage.derived.iter_pages``: one short statement each) and
written page by page, so memory stays at one page whatever the range. A file is
written under ``FILE.partial`` and renamed when complete, so a failed export never
leaves a file that looks whole. Progress goes to stderr when it is a terminal. The
database is ``database.url`` of the configuration (``--config``/``$MDS_CONFIG``,
``MDS_DATABASE_URL``) unless ``--db`` names another, as for every command.

Exit status: 0 exported, 1 database error, 2 bad usage, unknown symbol or bad time.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from market_data_services.app.commands._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_db_option,
    help_text,
    open_engine,
)
from market_data_services.app.commands._options import add_config_file_option, load_config
from market_data_services.app.commands._progress import ProgressBar
from market_data_services.app.openapi import field_names
from market_data_services.app.rows import time_texts, write_csv, write_jsonl
from market_data_services.market.timeframes import TIMEFRAMES
from market_data_services.storage.derived import (
    KINDS,
    Kind,
    Row,
    UnknownSymbolError,
    iter_pages,
    to_epoch_ms,
)

FORMATS = ("csv", "jsonl", "parquet")
#: Rows read and written at a time: the memory of an export.
PAGE_ROWS = 50_000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write candles, book metrics or sentiment of a symbol to CSV, JSON lines or Parquet",
        description=help_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=tuple(KINDS), help="what to export")
    parser.add_argument("--symbol", required=True, help="e.g. EUR/USD")
    parser.add_argument("--timeframe", choices=TIMEFRAMES, help="candles only (required for them)")
    parser.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="first time, inclusive: ISO-8601 (no offset: UTC) or epoch ms; default: the first",
    )
    parser.add_argument(
        "--to",
        dest="end",
        metavar="TIME",
        help="last time, exclusive: ISO-8601 or epoch ms; default: up to the newest",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="csv, jsonl or parquet (needs pyarrow: the [parquet] extra); "
        "default: from the output's extension, else csv",
    )
    parser.add_argument(
        "--output", "-o", default="-", metavar="FILE", help="file to write, or - (default)"
    )
    add_config_file_option(parser)
    add_db_option(parser)
    parser.set_defaults(handler=_export)


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"mds export: {message}", file=sys.stderr)
    return status


def _format_of(args: argparse.Namespace) -> str:
    if args.format is not None:
        return str(args.format)
    suffix = Path(args.output).suffix.lstrip(".").lower()
    return suffix if suffix in FORMATS else "csv"


def _export(args: argparse.Namespace) -> int:
    kind = KINDS[args.kind]
    if kind.has_timeframe and args.timeframe is None:
        return _fail(f"--timeframe is required for candles; one of {', '.join(TIMEFRAMES)}")
    if not kind.has_timeframe and args.timeframe is not None:
        return _fail(f"--timeframe applies to candles only, not to {kind.name}")
    try:
        start = None if args.start is None else to_epoch_ms(args.start, "--from")
        end = None if args.end is None else to_epoch_ms(args.end, "--to")
    except ValueError as exc:
        return _fail(str(exc))
    fmt = _format_of(args)
    writer_class = _WRITERS[fmt]
    if fmt == "parquet":
        try:
            importlib.import_module("pyarrow")
        except ImportError:
            return _fail(
                "--format parquet needs pyarrow: pip install 'market-data-services[parquet]'"
            )
    config = load_config("mds export", args)
    if config is None:
        return EXIT_USAGE
    try:
        engine = open_engine(config)
    except ValueError as exc:
        return _fail(str(exc))
    began = time.monotonic()
    try:
        pages = iter_pages(
            engine,
            kind,
            args.symbol,
            args.timeframe,
            start_ms=start,
            end_ms=end,
            page_rows=PAGE_ROWS,
        )
        progress = _Progress(
            engine, kind, symbol=args.symbol, timeframe=args.timeframe, start=start, end=end
        )
        with _output(args.output, binary=writer_class.binary) as out:
            writer = writer_class(out, kind)
            rows = 0
            for page in pages:
                writer.write(page)
                rows += len(page)
                progress.update(rows, int(page[-1][0]))
            writer.close()
        progress.close()
    except UnknownSymbolError as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # The reader went away (``mds export ... | head``): nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc}")
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None) or exc
        first = next(iter(str(original).splitlines()), type(exc).__name__)
        return _fail(f"database error: {first}", EXIT_FAILURE)
    finally:
        engine.dispose()
    seconds = time.monotonic() - began
    where = "standard output" if args.output == "-" else args.output
    print(
        f"mds export: {rows:,} {kind.name} rows of {args.symbol} to {where} ({fmt}) "
        f"in {seconds:.1f} s",
        file=sys.stderr,
    )
    return EXIT_OK


@contextmanager
def _output(path: str, *, binary: bool) -> Iterator[IO[Any]]:
    """Standard output, or ``path`` written as ``path.partial`` and renamed when the block
    ends without an error (removed when it fails)."""
    if path == "-":
        stream: IO[Any] = sys.stdout.buffer if binary else sys.stdout
        yield stream
        stream.flush()
        return
    partial = Path(f"{path}.partial")
    try:
        with partial.open("wb" if binary else "w", newline="" if not binary else None) as out:
            yield out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class _Progress:
    """Progress through the time range, on stderr when it is a terminal."""

    def __init__(
        self,
        engine: Engine,
        kind: Kind,
        *,
        symbol: str,
        timeframe: str | None,
        start: int | None,
        end: int | None,
    ) -> None:
        self._bar = ProgressBar(1000, unit="‰ of the time range")
        self._low, self._high = start, end
        self._kind = kind
        if self._bar.enabled and (start is None or end is None):
            self._bounds(engine, kind, symbol, timeframe)

    def _bounds(self, engine: Engine, kind: Kind, symbol: str, timeframe: str | None) -> None:
        where = "symbol = :s" + (" AND timeframe = :tf" if kind.has_timeframe else "")
        column = kind.time_column
        sql = text(f"SELECT min({column}), max({column}) FROM {kind.table.name} WHERE {where}")
        with engine.connect() as connection:
            low, high = connection.execute(sql, {"s": symbol, "tf": timeframe}).one()
        if self._low is None and low is not None:
            self._low = int(low)
        if self._high is None and high is not None:
            self._high = int(high) + 1

    def update(self, rows: int, last_ts: int) -> None:
        if not self._bar.enabled or self._low is None or self._high is None:
            return
        span = max(self._high - self._low, 1)
        done = min(1000, max(0, (last_ts - self._low) * 1000 // span))
        when = time_texts(self._kind, [last_ts])[0]
        self._bar.update(done, f"{rows:,} rows, up to {when}")

    def close(self) -> None:
        self._bar.close()


class _CsvWriter:
    binary = False

    def __init__(self, out: TextIO, kind: Kind) -> None:
        self._out, self._kind = out, kind
        self._header = True

    def write(self, page: list[Row]) -> None:
        write_csv(self._out, self._kind, page, header=self._header)
        self._header = False

    def close(self) -> None:
        if self._header:  # no rows at all: still a valid CSV with its header
            write_csv(self._out, self._kind, [], header=True)


class _JsonlWriter:
    binary = False

    def __init__(self, out: TextIO, kind: Kind) -> None:
        self._out, self._kind = out, kind

    def write(self, page: list[Row]) -> None:
        write_jsonl(self._out, self._kind, page)

    def close(self) -> None:
        pass


class _ParquetWriter:
    """One row group per page; ``time`` as a UTC timestamp column beside the epoch ms."""

    binary = True

    def __init__(self, out: io.BufferedIOBase, kind: Kind) -> None:
        pa = importlib.import_module("pyarrow")
        self._pa = pa
        self._pq = importlib.import_module("pyarrow.parquet")
        self._kind = kind
        types = {"tick_count": pa.int64(), "complete": pa.bool_(), "signal": pa.int8()}
        fields = [
            pa.field(kind.time_column, pa.int64()),
            pa.field("time", pa.timestamp("ms", tz="UTC")),
            *(pa.field(name, types.get(name, pa.float64())) for name in kind.columns),
        ]
        self._schema = pa.schema(fields)
        self._writer = self._pq.ParquetWriter(out, self._schema)
        assert [f.name for f in fields] == field_names(kind)

    def write(self, page: list[Row]) -> None:
        columns = [list(column) for column in zip(*page, strict=True)]
        columns.insert(1, columns[0])  # the same epoch ms, typed as a timestamp
        table = self._pa.Table.from_arrays(
            [self._pa.array(c, type=f.type) for c, f in zip(columns, self._schema, strict=True)],
            schema=self._schema,
        )
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


_WRITERS: dict[str, Any] = {"csv": _CsvWriter, "jsonl": _JsonlWriter, "parquet": _ParquetWriter}
