"""A fuzz suite over damaged files: every registered layout's reader, and the whole
``mds ingest`` command.

Each example takes a small good file of one layout (``SEEDS``) and damages it as a
hostile or unlucky file would be: one byte changed at a random place, the file cut at a
random place, a junk line between good lines, another encoding or line end, or the
file gzip'd and then cut or changed. What must hold:

- no exception escapes but the documented ones (not of the kind, an implausible first
  time, a damaged file), and every message names the file;
- the rows before the damage are read exactly as from the good file (before the line
  the damage is on; a gzip cut part way: every row read is the good file's row);
- ``mds ingest`` exits 0, 1 or 2, prints no traceback, names the file in every
  ``failed:`` and ``rejected:`` line, and accepts at least the rows before the damage.

How many examples: ``MDS_FUZZ_EXAMPLES`` (default 40 a test, derandomized under
``CI=true`` so CI runs the same cases each time; set it higher for a longer local hunt).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_data_services.app.cli import main
from market_data_services.ingest import BadFileError, ImplausibleTimeError, WrongFileKindError
from market_data_services.ingest.files import (
    SNIFF_BYTES,
    ReadLimits,
    collect_damage,
    collect_refused,
    reading_with,
)
from market_data_services.ingest.layouts import LAYOUTS, ReadOptions
from market_data_services.ingest.layouts.base import inspect_layout, read_file
from tests.conftest import IN_CI, SAMPLE_DATA

EXAMPLES = int(os.environ.get("MDS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=IN_CI,
    database=None if IN_CI else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _gunzip_head(path: Path, lines: int) -> bytes:
    with gzip.open(path, "rb") as stream:
        return b"".join(stream.readline() for _ in range(lines))


def _plain_ticks() -> bytes:
    rows = [f"{1_699_999_000_000 + i * 1000},1.{1000 + i},1.{1002 + i}" for i in range(30)]
    return ("timestamp,bid,ask\n" + "\n".join(rows) + "\n").encode()


def _jsonl_books() -> bytes:
    lines = []
    for i in range(10):
        bids = [[round(1.0 - j * 0.001, 3), 1.5] for j in range(5)]
        asks = [[round(1.1 + j * 0.001, 3), 2.5] for j in range(5)]
        book = {"symbol": "EUR/USD", "ts": 1_699_999_000_000 + i * 1000, "bids": bids}
        lines.append(json.dumps(book | {"asks": asks}))
    return ("\n".join(lines) + "\n").encode()


def _binance_depth() -> bytes:
    header = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n"
    rows = []
    for message in range(4):
        kind = "snap" if message == 0 else "set"
        ts = 1_667_346_579_146 + message * 100
        for level in range(4):
            side = "b" if level % 2 == 0 else "a"
            price = 20000 - level if side == "b" else 20001 + level
            rows.append(f"BTCUSDT,{ts},{message},{message},{side},{kind},{price}.0,1.{level},-1")
    return (header + "\n".join(rows) + "\n").encode()


def _plain_sentiment() -> bytes:
    rows = [f"2024-01-01T00:{i:02d}:00Z,EUR/USD,{40 + i % 5},{60 - i % 5}" for i in range(20)]
    return ("timestamp,symbol,long_pct,short_pct\n" + "\n".join(rows) + "\n").encode()


_BOOKS = SAMPLE_DATA / "orderbook"
_LEAN = SAMPLE_DATA / "forex_ticks" / "lean_fxcm" / "eurusd" / "20140504_eurusd_tick_quote.csv.gz"


@dataclass(frozen=True)
class Seed:
    kind: str
    layout: str
    name: str  # the file name (LEAN takes its date from it)
    data: bytes


#: One small good file of every layout shipped (real samples where they are small).
SEEDS = {
    f"{seed.kind}/{seed.layout}": seed
    for seed in (
        Seed("ticks", "plain", "ticks.csv", _plain_ticks()),
        Seed("ticks", "lean", "20140504_eurusd_tick_quote.csv", _gunzip_head(_LEAN, 40)),
        Seed("dom", "jsonl", "books.jsonl", _jsonl_books()),
        Seed(
            "dom",
            "bybit",
            "bybit.data",
            _gunzip_head(_BOOKS / "bybit_2024-12-01_XRPUSDT_ob500.data.gz", 4),
        ),
        Seed(
            "dom",
            "tardis",
            "tardis.csv",
            _gunzip_head(_BOOKS / "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv.gz", 20),
        ),
        Seed("dom", "binance", "depth.csv", _binance_depth()),
        Seed("sentiment", "plain", "sentiment.csv", _plain_sentiment()),
        Seed(
            "sentiment",
            "ig",
            "ig.csv",
            _gunzip_head(SAMPLE_DATA / "sentiment" / "ig_client_sentiment.csv.gz", 4),
        ),
    )
}


def test_every_registered_layout_has_a_seed() -> None:
    registered = {(kind, name) for kind, layouts in LAYOUTS.items() for name in layouts}
    assert registered == {(seed.kind, seed.layout) for seed in SEEDS.values()}


# -- damage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damaged:
    data: bytes
    #: The first line the damage may change (rows before it must read as in the good file);
    #: None: unknown (a changed gzip), 0: the whole file may read differently.
    line: int | None
    #: A gzip cut part way: every row read must be the good file's row of that line.
    prefix: bool
    how: str
    #: A line over the limit was put in as this line: it is refused, and every row of
    #: the good file reads the same, the rows after it one line further down.
    long_line: int | None = None


def _line_of(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def line_limit(data: bytes) -> int:
    """The ``max_line_bytes`` a seed is read under: its longest line, so that a longer
    one is refused."""
    return max(len(line) for line in data.splitlines(keepends=True))


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> Damaged:
    kinds = ["byte", "cut", "junk", "long", "encoding", "gzip_cut", "gzip_byte"]
    how = draw(st.sampled_from(kinds))
    if how == "long":
        lines = data.splitlines(keepends=True)
        at = draw(st.integers(0, len(lines)))
        size = line_limit(data) + draw(st.integers(0, 3000))
        junk = draw(st.sampled_from([b"9", b"{", b'"', b","])) * size + b"\n"
        changed = b"".join(lines[:at]) + junk + b"".join(lines[at:])
        return Damaged(changed, None, False, f"{size + 1}-byte line {at + 1}", at + 1)
    if how == "byte":
        at = draw(st.integers(0, len(data) - 1))
        value = draw(st.integers(0, 255))
        changed = data[:at] + bytes([value]) + data[at + 1 :]
        return Damaged(changed, _line_of(data, at), False, f"byte {at} -> {value:#x}")
    if how == "cut":
        at = draw(st.integers(0, len(data)))
        return Damaged(data[:at], _line_of(data, at), False, f"cut at {at}")
    if how == "junk":
        lines = data.splitlines(keepends=True)
        at = draw(st.integers(0, len(lines)))
        junk = draw(
            st.one_of(
                st.binary(max_size=200),
                st.text(max_size=200).map(str.encode),
                st.sampled_from([b'"', b",,,,", b"{", b"[" * 5000, b"\x00\xff", b"1,2,3"]),
            )
        ).replace(b"\n", b"")
        changed = b"".join(lines[:at]) + junk + b"\n" + b"".join(lines[at:])
        return Damaged(changed, at + 1, False, f"junk line {junk[:40]!r} before line {at + 1}")
    if how == "encoding":
        text = data.decode()
        name = draw(st.sampled_from(["utf-16", "utf-8-sig", "crlf", "cr", "latin-1 junk"]))
        encoded = {
            "utf-16": lambda: text.encode("utf-16"),
            "utf-8-sig": lambda: text.encode("utf-8-sig"),
            "crlf": lambda: text.replace("\r\n", "\n").replace("\n", "\r\n").encode(),
            "cr": lambda: text.replace("\r\n", "\n").replace("\n", "\r").encode(),
            "latin-1 junk": lambda: text.encode() + "café,\u00e9\n".encode("latin-1"),
        }[name]()
        return Damaged(encoded, 0, False, f"encoding {name}")
    packed = gzip.compress(data, mtime=0)
    at = draw(st.integers(0, len(packed) - 1))
    if how == "gzip_cut":
        return Damaged(packed[:at], None, True, f"gzip cut at {at} of {len(packed)}")
    value = draw(st.integers(0, 255))
    changed = packed[:at] + bytes([value]) + packed[at + 1 :]
    return Damaged(changed, None, False, f"gzip byte {at} -> {value:#x}")


# -- reading ------------------------------------------------------------------------------------

#: What the inspection of a damaged file may raise (the command reports each as a failed file).
REFUSALS = (WrongFileKindError, ImplausibleTimeError, BadFileError)


def _rows(chunk: Any) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """(line, what was read) of every row of a chunk of any kind."""
    values = [
        getattr(chunk, name)
        for name in ("bid", "ask", "long_share", "short_share")
        if hasattr(chunk, name)
    ]
    counts = []
    if hasattr(chunk, "batch"):
        counts = [chunk.batch.bid_counts, chunk.batch.ask_counts]
    for i, line in enumerate(chunk.lines.tolist()):
        symbol = chunk.symbols[int(chunk.symbol_codes[i])]
        row = (symbol, int(chunk.ts[i]), *(repr(float(v[i])) for v in values))  # nan == nan
        yield line, (*row, *(int(c[i]) for c in counts))


@dataclass
class Read:
    rows: dict[int, list[tuple[Any, ...]]]
    messages: list[str]
    refused: bool  # inspection refused the file


def read(kind: str, path: Path, limits: ReadLimits) -> Read:
    """Everything the layout's reader makes of ``path``, as the pipeline reads it."""
    rows: dict[int, list[tuple[Any, ...]]] = {}
    messages: list[str] = []
    try:
        with reading_with(limits):
            data_file = inspect_layout(kind, path)
    except REFUSALS as exc:
        return Read(rows, [str(exc)], True)
    with reading_with(limits), collect_damage() as damage, collect_refused() as refused:
        for chunk in read_file(kind, data_file, ReadOptions(symbol="EUR/USD")):
            for line, row in _rows(chunk):
                rows.setdefault(line, []).append(row)
            messages += [str(rejection) for rejection in chunk.rejections]
    messages += [str(failure) for failure in damage]
    messages += [f"{r.path}:{r.line}: {r.message}" for r in refused]
    return Read(rows, messages, False)


def _write(folder: Path, seed: Seed, data: bytes, gzipped: bool) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / (seed.name + (".gz" if gzipped else ""))
    path.write_bytes(data)
    return path


def _check_kept(seed: Seed, good: Read, bad: Read, damage: Damaged, size: int) -> None:
    """The rows before the damage read as from the good file."""
    if damage.long_line is not None:
        at = damage.long_line
        if at == 1 and bad.refused:
            return  # a first line over the limit cannot tell the layout: refused, named
        assert not bad.refused, bad.messages
        shifted = {line + (line >= at): rows for line, rows in good.rows.items()}
        assert bad.rows == shifted
        [refusal] = bad.messages
        assert f":{at}: line of " in refusal, refusal
        return
    if damage.prefix:
        for line, rows in bad.rows.items():
            assert good.rows.get(line) == rows, f"line {line} of a cut gzip differs"
        return
    if damage.line is None or damage.line <= 1:
        return
    before = sorted(line for line in good.rows if line < damage.line)
    if seed.layout == "binance" and before:
        before.pop()  # the message the damage is in may start before it
    if bad.refused:
        # Only a damaged head can make the file look like another kind or time.
        assert damage.line <= 100 or size <= SNIFF_BYTES, bad.messages
        return
    for line in before:
        assert bad.rows.get(line) == good.rows[line], f"line {line}: {bad.messages[:3]}"


@pytest.mark.parametrize("layout", list(SEEDS))
@FUZZ
@given(data=st.data())
def test_a_reader_meets_damage_with_a_named_error_and_keeps_the_rows_before_it(
    layout: str, data: st.DataObject
) -> None:
    seed = SEEDS[layout]
    damage = data.draw(damaged(seed.data), label="damage")
    limits = ReadLimits(max_line_bytes=line_limit(seed.data))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        good = read(seed.kind, _write(folder / "good", seed, seed.data, False), limits)
        assert good.rows and not good.messages, good.messages
        path = _write(folder, seed, damage.data, damage.how.startswith("gzip"))
        bad = read(seed.kind, path, limits)
        for message in bad.messages:
            assert message.startswith(str(path)), message
        _check_kept(seed, good, bad, damage, len(seed.data))


# -- the command --------------------------------------------------------------------------------

_SUMMARY = re.compile(r"^(\d+) files, [\d,]+ rows: ([\d,]+) \w+ accepted", re.MULTILINE)


def _ingest(kind: str, path: Path, url: str, max_line_bytes: int) -> tuple[int, str, str]:
    """``mds ingest KIND PATH`` in this process, with ``ingest.max_line_bytes`` set as a
    user would (``MDS_INGEST_MAX_LINE_BYTES``)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["ingest", kind, str(path), "--no-progress", "--db", url]
    if kind == "ticks":
        argv += ["--symbol", "EUR/USD"]
    name = "MDS_INGEST_MAX_LINE_BYTES"
    before = os.environ.get(name)
    os.environ[name] = str(max_line_bytes)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def fuzz_database() -> Iterator[str]:
    """One SQLite database for every example (rows of earlier ones are duplicates)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/fuzz.sqlite"
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["db", "upgrade", "--db", url]) == 0
        yield url


@pytest.mark.parametrize("layout", list(SEEDS))
@FUZZ
@given(data=st.data())
def test_mds_ingest_of_a_damaged_file_exits_0_1_or_2_naming_the_file(
    layout: str, data: st.DataObject, fuzz_database: str
) -> None:
    seed = SEEDS[layout]
    damage = data.draw(damaged(seed.data), label="damage")
    limit = line_limit(seed.data)
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), seed, damage.data, damage.how.startswith("gzip"))
        code, out, err = _ingest(seed.kind, path, fuzz_database, limit)
        good_path = _write(Path(tmp) / "good", seed, seed.data, False)
        good = read(seed.kind, good_path, ReadLimits(max_line_bytes=limit))
    assert code in (0, 1, 2), (code, out, err)
    assert "Traceback" not in err
    for line in err.splitlines():
        if line.startswith(("failed: ", "rejected: ")):
            assert line.split(": ", 1)[1].startswith(str(path)), line
    summary = _SUMMARY.search(out)
    if damage.long_line is not None and damage.long_line > 1:
        # One rejected line; every row of the good file accepted (new or stored before).
        assert code == 1, (code, out, err)
        assert summary is not None, (out, err)
        rows = sum(len(rows) for rows in good.rows.values())
        assert int(summary[2].replace(",", "")) == rows, (damage.how, out, err)
        assert "rejected by reason: line_too_long 1" in out, out
    if damage.line is not None and damage.line > 1 and code != 2:
        kept = sum(len(rows) for line, rows in good.rows.items() if line < damage.line - 1)
        assert summary is not None, (out, err)
        assert int(summary[2].replace(",", "")) >= kept, (damage.how, out, err)
