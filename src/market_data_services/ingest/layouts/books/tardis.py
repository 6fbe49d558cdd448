"""Tardis ``book_snapshot_N`` CSV (any N): ``exchange,symbol,timestamp,local_timestamp,
asks[0].price,asks[0].amount,bids[0].price,...``; ``timestamp`` in microseconds since the
epoch; empty cells are absent levels (only at the end).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from market_data_services.ingest.files import (
    TimeOutOfRangeError,
    csv_data_rows,
    parse_number,
)
from market_data_services.ingest.layouts.base import ReadOptions
from market_data_services.ingest.layouts.books.common import (
    BookFile,
    BookLayout,
    Collector,
    NotABookFileError,
    RawBooks,
    TooManyLevelsError,
    check_depth,
    csv_header,
)
from market_data_services.market.book import FloatArray

#: A level column of the header: ``asks[0].price``.
TARDIS_LEVEL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")


@dataclass(frozen=True)
class TardisColumns:
    symbol: int
    timestamp: int
    bid_price: list[int]
    bid_amount: list[int]
    ask_price: list[int]
    ask_amount: list[int]


def tardis_columns(book_file: BookFile) -> TardisColumns:
    columns = book_file.columns
    position = {name: i for i, name in enumerate(columns)}
    for needed in ("symbol", "timestamp"):
        if needed not in position:
            raise NotABookFileError(book_file.path, f"the Tardis header has no {needed!r} column")
    found: dict[tuple[str, str], dict[int, int]] = {}
    for i, name in enumerate(columns):
        match = TARDIS_LEVEL.match(name)
        if match:
            found.setdefault((match[1], match[3]), {})[int(match[2])] = i
    depth = max((max(v) + 1 for v in found.values()), default=0)
    lists: dict[tuple[str, str], list[int]] = {}
    for side in ("bids", "asks"):
        for part in ("price", "amount"):
            got = found.get((side, part), {})
            gaps = [level for level in range(depth) if level not in got]
            if gaps:
                raise NotABookFileError(
                    book_file.path, f"the Tardis header has no {side}[{gaps[0]}].{part} column"
                )
            lists[(side, part)] = [got[level] for level in range(depth)]
    return TardisColumns(
        position["symbol"],
        position["timestamp"],
        lists[("bids", "price")],
        lists[("bids", "amount")],
        lists[("asks", "price")],
        lists[("asks", "amount")],
    )


def _tardis_side(values: list[str], prices: list[int], amounts: list[int], side: str) -> FloatArray:
    pairs: list[tuple[float, float]] = []
    ended = -1
    for level, (i, j) in enumerate(zip(prices, amounts, strict=True)):
        price, amount = values[i], values[j]
        if not price and not amount:
            if ended < 0:
                ended = level
            continue
        if ended >= 0:
            raise ValueError(f"{side}[{level}] is given after the empty {side}[{ended}]")
        pairs.append(
            (
                parse_number(price, f"{side}[{level}].price"),
                parse_number(amount, f"{side}[{level}].amount"),
            )
        )
    return np.array(pairs, dtype=np.float64).reshape(-1, 2)


def read_tardis(book_file: BookFile) -> Iterator[RawBooks]:
    source = str(book_file.path)
    times = book_file.times()
    layout = tardis_columns(book_file)
    width = len(book_file.columns)
    symbols: list[str] = []
    codes: dict[str, int] = {}
    chunk = Collector(source, symbols, codes)
    for number, row in csv_data_rows(book_file.path, NotABookFileError):
        if chunk.full():  # rejected rows count too
            yield chunk.arrays()
            chunk = Collector(source, symbols, codes)
        try:
            if len(row) != width:
                raise ValueError(f"expected {width} fields, got {len(row)}")
            symbol = row[layout.symbol].strip()
            if not symbol:
                raise ValueError("the symbol field is empty")
            ts = times.parse(row[layout.timestamp])
            bids = _tardis_side(row, layout.bid_price, layout.bid_amount, "bids")
            asks = _tardis_side(row, layout.ask_price, layout.ask_amount, "asks")
            check_depth(bids.shape[0], "bids")
            check_depth(asks.shape[0], "asks")
        except TimeOutOfRangeError as exc:
            chunk.reject(number, "timestamp_out_of_range", str(exc))
            continue
        except TooManyLevelsError as exc:
            chunk.reject(number, "too_many_levels", str(exc))
            continue
        except ValueError as exc:
            text = ",".join(row)
            chunk.reject(number, "malformed", f"{exc}; row {text[:80]!r}")
            continue
        chunk.add(symbol, ts, number, bids, asks)
    yield chunk.arrays()


class TardisBooks(BookLayout):
    name = "tardis"
    description = "Tardis book_snapshot_N CSV"
    signature = "a Tardis book_snapshot_N header"

    def sniff(self, first: str) -> bool:
        return not first.startswith("{") and any(TARDIS_LEVEL.match(c) for c in csv_header(first))

    def inspect(self, path: Path, first: str, *, time_unit: str, latest_ms: int | None) -> BookFile:
        found = self.file(path, csv_header(first))
        tardis_columns(found)  # raises for a header it cannot read
        return self.judged(found, time_unit=time_unit, latest_ms=latest_ms)

    def read(self, data_file: BookFile, options: ReadOptions) -> Iterator[RawBooks]:
        return read_tardis(data_file)


__all__ = ["TARDIS_LEVEL", "TardisBooks", "TardisColumns", "read_tardis", "tardis_columns"]
