"""Order books as numpy batches: packing levels, validating books, computing metrics.

A batch of ``n`` books keeps each side's levels flat, CSR style: ``bid_counts[i]`` levels
of book ``i`` follow one another in ``bids`` (shape ``(sum(bid_counts), 2)``, columns
price and size, best level first). Everything here works on whole batches, so the cost
per book is a few array operations, not a Python loop.

Stored form of one side: little-endian float64 ``price, size`` pairs, best first
(``pack_levels`` / ``unpack_levels``); 16 bytes a level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

LEVEL_DTYPE = np.dtype("<f8")
LEVEL_BYTES = 2 * LEVEL_DTYPE.itemsize

#: The depth band of ``depth_bid_10bps`` / ``depth_ask_10bps``, in basis points of mid.
DEPTH_BAND_BPS = 10.0
#: Levels summed by ``imbalance_5``.
IMBALANCE_LEVELS = 5

#: Why a book can be rejected (besides the reasons every ingester has).
BOOK_REASONS = (
    "empty_book",  # no level on either side
    "one_sided",  # one side has no level: not a book
    "not_finite",  # NaN or infinite price or size
    "non_positive_price",
    "non_positive_size",  # size <= 0 (a level of size 0 is no level)
    "unsorted_levels",  # bids not descending or asks not ascending by price
    "duplicate_level",  # two levels of one side at the same price
)

METRIC_COLUMNS = (
    "best_bid",
    "best_ask",
    "spread",
    "spread_bps",
    "mid",
    "microprice",
    "imbalance_1",
    "imbalance_5",
    "depth_bid_10bps",
    "depth_ask_10bps",
    "ofi",
)


def pack_levels(levels: npt.ArrayLike) -> bytes:
    """One side's ``(price, size)`` levels, best first, in the stored form."""
    array = np.asarray(levels, dtype=np.float64)
    if array.size == 0:
        return b""
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"levels must be (price, size) pairs, got an array of shape {array.shape}")
    return np.ascontiguousarray(array, dtype=LEVEL_DTYPE).tobytes()


def unpack_levels(blob: bytes) -> FloatArray:
    """The ``(k, 2)`` array of one stored side (a copy you may change)."""
    if len(blob) % LEVEL_BYTES:
        raise ValueError(f"a packed side is a multiple of {LEVEL_BYTES} bytes, got {len(blob)}")
    return np.frombuffer(blob, dtype=LEVEL_DTYPE).reshape(-1, 2).astype(np.float64)


@dataclass
class BookBatch:
    """``n`` books, levels flat per side (see the module docstring)."""

    bid_counts: IntArray
    bids: FloatArray
    ask_counts: IntArray
    asks: FloatArray

    def __len__(self) -> int:
        return int(self.bid_counts.shape[0])

    @classmethod
    def from_blobs(
        cls, bid_blobs: list[bytes], ask_blobs: list[bytes]
    ) -> tuple[BookBatch, BoolArray]:
        """A batch from stored sides, and a mask of the books whose blobs are whole.

        A blob whose length is no multiple of 16 bytes is read as an empty side (so the
        book is rejected later); the mask tells which ones.
        """
        bid_counts, bids, bids_ok = _unpack_many(bid_blobs)
        ask_counts, asks, asks_ok = _unpack_many(ask_blobs)
        return cls(bid_counts, bids, ask_counts, asks), bids_ok & asks_ok

    @classmethod
    def from_joined(
        cls, bids: bytes, bid_lengths: IntArray, asks: bytes, ask_lengths: IntArray
    ) -> tuple[BookBatch, BoolArray]:
        """As ``from_blobs``, from each side's blobs joined end to end and their lengths
        in bytes (one buffer per side, as a database's string aggregate returns them):
        no Python object per book."""
        bid_counts, bid_levels, bids_ok = _unpack_joined(bids, bid_lengths)
        ask_counts, ask_levels, asks_ok = _unpack_joined(asks, ask_lengths)
        return cls(bid_counts, bid_levels, ask_counts, ask_levels), bids_ok & asks_ok

    def side_blobs(self, index: IntArray) -> tuple[list[bytes], list[bytes]]:
        """The stored forms of the books at ``index``."""
        return _pack_many(self.bid_counts, self.bids, index), _pack_many(
            self.ask_counts, self.asks, index
        )


def _unpack_many(blobs: list[bytes]) -> tuple[IntArray, FloatArray, BoolArray]:
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    whole = lengths % LEVEL_BYTES == 0
    if not whole.all():
        blobs = [blob if ok else b"" for blob, ok in zip(blobs, whole.tolist(), strict=True)]
        lengths = np.where(whole, lengths, 0)
    flat = np.frombuffer(b"".join(blobs), dtype=LEVEL_DTYPE).reshape(-1, 2)
    return lengths // LEVEL_BYTES, flat.astype(np.float64, copy=False), whole


def _unpack_joined(data: bytes, lengths: IntArray) -> tuple[IntArray, FloatArray, BoolArray]:
    if len(data) != int(lengths.sum()):
        raise ValueError(f"joined sides hold {len(data)} bytes, their lengths {lengths.sum()}")
    whole = lengths % LEVEL_BYTES == 0
    if not whole.all():
        # Drop the bytes of the malformed sides: they are read as empty, as in from_blobs.
        data = np.frombuffer(data, dtype=np.uint8)[np.repeat(whole, lengths)].tobytes()
        lengths = np.where(whole, lengths, 0)
    flat = np.frombuffer(data, dtype=LEVEL_DTYPE).reshape(-1, 2)
    return lengths // LEVEL_BYTES, flat.astype(np.float64, copy=False), whole


def _pack_many(counts: IntArray, levels: FloatArray, index: IntArray) -> list[bytes]:
    ends = np.cumsum(counts)
    starts = ends - counts
    data = np.ascontiguousarray(levels, dtype=LEVEL_DTYPE)
    return [
        data[start:end].tobytes()
        for start, end in zip(starts[index].tolist(), ends[index].tolist(), strict=True)
    ]


# -- validation --------------------------------------------------------------------------------


class BookProblem(NamedTuple):
    """Why book number ``position`` of a batch is rejected."""

    position: int
    reason: str
    message: str


def _level_problems(
    counts: IntArray, levels: FloatArray, *, descending: bool
) -> tuple[npt.NDArray[np.int8], IntArray]:
    """Per book: the first problem code on this side (0 none) and the level it is at."""
    n = counts.shape[0]
    code = np.zeros(n, dtype=np.int8)
    where = np.zeros(n, dtype=np.int64)
    if levels.shape[0] == 0:
        return code, where
    row = np.repeat(np.arange(n), counts)
    starts = np.cumsum(counts) - counts
    level_no = np.arange(levels.shape[0]) - starts[row]
    price, size = levels[:, 0], levels[:, 1]
    bad = np.zeros(levels.shape[0], dtype=np.int8)
    with np.errstate(invalid="ignore"):
        bad[~(np.isfinite(price) & np.isfinite(size))] = _CODE["not_finite"]
        bad[(bad == 0) & (price <= 0)] = _CODE["non_positive_price"]
        bad[(bad == 0) & (size <= 0)] = _CODE["non_positive_size"]
        follows = np.zeros(levels.shape[0], dtype=np.bool_)
        follows[1:] = row[1:] == row[:-1]
        step = np.zeros(levels.shape[0])
        step[1:] = price[1:] - price[:-1]
        if descending:
            step = -step
        bad[(bad == 0) & follows & (step == 0)] = _CODE["duplicate_level"]
        bad[(bad == 0) & follows & (step < 0)] = _CODE["unsorted_levels"]
    flagged = np.flatnonzero(bad)
    if flagged.size:
        # The first flagged level of each book wins.
        first_rows, first_at = np.unique(row[flagged], return_index=True)
        code[first_rows] = bad[flagged[first_at]]
        where[first_rows] = level_no[flagged[first_at]]
    return code, where


_CODE = {reason: number for number, reason in enumerate(BOOK_REASONS, start=1)}


def check_books(batch: BookBatch) -> tuple[BoolArray, list[BookProblem]]:
    """Which books are valid, and why each of the others is not (first problem only)."""
    n = len(batch)
    code = np.zeros(n, dtype=np.int8)
    no_bids, no_asks = batch.bid_counts == 0, batch.ask_counts == 0
    code[no_bids & no_asks] = _CODE["empty_book"]
    code[(code == 0) & (no_bids | no_asks)] = _CODE["one_sided"]
    bid_code, bid_at = _level_problems(batch.bid_counts, batch.bids, descending=True)
    ask_code, ask_at = _level_problems(batch.ask_counts, batch.asks, descending=False)
    from_bids = (code == 0) & (bid_code != 0)
    code[from_bids] = bid_code[from_bids]
    from_asks = (code == 0) & (ask_code != 0)
    code[from_asks] = ask_code[from_asks]
    valid = code == 0
    problems: list[BookProblem] = []
    if not valid.all():
        bid_starts = np.cumsum(batch.bid_counts) - batch.bid_counts
        ask_starts = np.cumsum(batch.ask_counts) - batch.ask_counts
        for index in np.flatnonzero(~valid).tolist():
            reason = BOOK_REASONS[int(code[index]) - 1]
            if from_bids[index]:
                side, start, at, levels = "bid", bid_starts[index], bid_at[index], batch.bids
            else:
                side, start, at, levels = "ask", ask_starts[index], ask_at[index], batch.asks
            message = _describe(
                reason,
                side=side,
                at=int(at),
                levels=levels,
                start=int(start),
                bids=int(batch.bid_counts[index]),
                asks=int(batch.ask_counts[index]),
            )
            problems.append(BookProblem(index, reason, message))
    return valid, problems


def _describe(
    reason: str, *, side: str, at: int, levels: FloatArray, start: int, bids: int, asks: int
) -> str:
    if reason == "empty_book":
        return "empty book: no bids and no asks"
    if reason == "one_sided":
        present, missing, count = ("bids", "asks", bids) if bids else ("asks", "bids", asks)
        return f"{present} only ({count} levels), no {missing}: one side is not a book"
    price, size = (float(v) for v in levels[start + at])
    place = f"{side} level {at + 1}"
    if reason == "not_finite":
        return f"{place}: price {price} size {size} is not a finite number"
    if reason == "non_positive_price":
        return f"{place}: price must be > 0, got {price}"
    if reason == "non_positive_size":
        return f"{place}: size must be > 0, got {size}"
    if reason == "duplicate_level":
        return f"{place}: price {price} repeats level {at} (duplicated level)"
    before = float(levels[start + at - 1, 0])
    if side == "bid":
        return f"{place}: price {price} is not below level {at}'s {before} (bids descend)"
    return f"{place}: price {price} is not above level {at}'s {before} (asks ascend)"


def crossed_and_locked(batch: BookBatch, valid: BoolArray) -> tuple[BoolArray, BoolArray]:
    """Masks of the valid books whose best ask is below (crossed) or at (locked) best bid."""
    best_bid, _, best_ask, _ = top_of_book(batch)
    with np.errstate(invalid="ignore"):
        return valid & (best_ask < best_bid), valid & (best_ask == best_bid)


# -- metrics -----------------------------------------------------------------------------------


def top_of_book(batch: BookBatch) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Best bid, its size, best ask, its size; NaN for a side without levels."""
    out = []
    for counts, levels in ((batch.bid_counts, batch.bids), (batch.ask_counts, batch.asks)):
        starts = np.cumsum(counts) - counts
        price = np.full(counts.shape[0], np.nan)
        size = np.full(counts.shape[0], np.nan)
        has = counts > 0
        price[has] = levels[starts[has], 0]
        size[has] = levels[starts[has], 1]
        out += [price, size]
    return out[0], out[1], out[2], out[3]


class Top(NamedTuple):
    """Best bid and ask with their sizes: what OFI needs of the previous book."""

    bid: float
    bid_size: float
    ask: float
    ask_size: float


def _padded(counts: IntArray, levels: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Prices (NaN padded) and sizes (0 padded) as ``(n, max levels)`` arrays."""
    n = counts.shape[0]
    width = int(counts.max()) if n else 0
    if n and levels.shape[0] == n * width and bool((counts == width).all()):
        view = levels.reshape(n, width, 2)
        return view[:, :, 0], view[:, :, 1]
    prices = np.full((n, width), np.nan)
    sizes = np.zeros((n, width))
    row = np.repeat(np.arange(n), counts)
    column = np.arange(levels.shape[0]) - (np.cumsum(counts) - counts)[row]
    prices[row, column] = levels[:, 0]
    sizes[row, column] = levels[:, 1]
    return prices, sizes


def compute_metrics(batch: BookBatch, previous: Top | None) -> dict[str, FloatArray]:
    """The book metrics of every book of a valid batch, in order (see README formulas).

    ``previous`` is the book before the first one, for its order-flow imbalance; without
    one the first book's OFI is 0.
    """
    b, qb, a, qa = top_of_book(batch)
    mid = (b + a) / 2.0
    spread = a - b
    top_total = qb + qa
    bid_prices, bid_sizes = _padded(batch.bid_counts, batch.bids)
    ask_prices, ask_sizes = _padded(batch.ask_counts, batch.asks)
    bid_k = bid_sizes[:, :IMBALANCE_LEVELS].sum(axis=1)
    ask_k = ask_sizes[:, :IMBALANCE_LEVELS].sum(axis=1)
    band = DEPTH_BAND_BPS
    column_mid = mid[:, None]
    with np.errstate(invalid="ignore"):
        bid_in = 1e4 * np.abs(bid_prices - column_mid) / column_mid <= band
        ask_in = 1e4 * np.abs(ask_prices - column_mid) / column_mid <= band
    depth_bid = np.where(bid_in, bid_sizes, 0.0).sum(axis=1)
    depth_ask = np.where(ask_in, ask_sizes, 0.0).sum(axis=1)

    n = len(batch)
    ofi = np.zeros(n)
    if n:
        # Each book's predecessor: the one before it, or ``previous`` for the first (the
        # first book itself when there is none; its OFI is then set to 0).
        first = Top(b[0], qb[0], a[0], qa[0]) if previous is None else previous
        pb = np.concatenate(([first.bid], b[:-1]))
        pqb = np.concatenate(([first.bid_size], qb[:-1]))
        pa = np.concatenate(([first.ask], a[:-1]))
        pqa = np.concatenate(([first.ask_size], qa[:-1]))
        ofi = qb * (b >= pb) - pqb * (b <= pb) - qa * (a <= pa) + pqa * (a >= pa)
        if previous is None:
            ofi[0] = 0.0
    return {
        "best_bid": b,
        "best_ask": a,
        "spread": spread,
        "spread_bps": 1e4 * spread / mid,
        "mid": mid,
        "microprice": (a * qb + b * qa) / top_total,
        "imbalance_1": (qb - qa) / top_total,
        "imbalance_5": (bid_k - ask_k) / (bid_k + ask_k),
        "depth_bid_10bps": depth_bid,
        "depth_ask_10bps": depth_ask,
        "ofi": ofi,
    }


def select(batch: BookBatch, keep: BoolArray) -> BookBatch:
    """The books of ``batch`` where ``keep`` is True, in order."""
    if bool(keep.all()):
        return batch
    bid_rows = np.repeat(keep, batch.bid_counts)
    ask_rows = np.repeat(keep, batch.ask_counts)
    return BookBatch(
        batch.bid_counts[keep], batch.bids[bid_rows], batch.ask_counts[keep], batch.asks[ask_rows]
    )


__all__ = [
    "BOOK_REASONS",
    "DEPTH_BAND_BPS",
    "IMBALANCE_LEVELS",
    "LEVEL_BYTES",
    "METRIC_COLUMNS",
    "BookBatch",
    "BookProblem",
    "Top",
    "check_books",
    "compute_metrics",
    "crossed_and_locked",
    "pack_levels",
    "select",
    "top_of_book",
    "unpack_levels",
]
