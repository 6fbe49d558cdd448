from __future__ import annotations

import numpy as np
import pytest

from market_data_services.market.book import BookBatch, pack_levels


def test_joined_sides_decode_as_the_separate_blobs_with_malformed_ones_read_as_empty() -> None:
    rng = np.random.default_rng(3)
    bids = [pack_levels(rng.uniform(1, 2, size=(int(rng.integers(0, 4)), 2))) for _ in range(9)]
    asks = [pack_levels(rng.uniform(1, 2, size=(int(rng.integers(0, 4)), 2))) for _ in range(9)]
    bids[2], asks[5], asks[8] = b"\x01" * 15, b"\x02" * 17, b"\x03" * 7
    separate, separate_whole = BookBatch.from_blobs(bids, asks)
    joined, joined_whole = BookBatch.from_joined(
        b"".join(bids),
        np.array([len(b) for b in bids], dtype=np.int64),
        b"".join(asks),
        np.array([len(a) for a in asks], dtype=np.int64),
    )
    assert joined_whole.tolist() == separate_whole.tolist()
    assert not joined_whole[[2, 5, 8]].any()
    for side in ("bid_counts", "bids", "ask_counts", "asks"):
        assert np.array_equal(getattr(joined, side), getattr(separate, side)), side


def test_joined_sides_that_disagree_with_their_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="joined sides hold 16 bytes, their lengths 32"):
        BookBatch.from_joined(b"\x00" * 16, np.array([32]), b"", np.array([0]))
