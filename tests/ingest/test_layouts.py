from __future__ import annotations

from pathlib import Path

import pytest

from market_data_services.ingest.layouts import LAYOUTS, layout_names, register
from market_data_services.ingest.layouts.ticks.plain import PlainTicks
from market_data_services.ingest.ticks import inspect_tick_files


def test_every_shipped_layout_is_registered_under_its_kind() -> None:
    assert layout_names("ticks") == ("plain", "lean")
    assert sorted(layout_names("dom")) == ["binance", "bybit", "jsonl", "tardis"]
    assert layout_names("sentiment") == ("plain", "ig")


def test_a_second_layout_of_the_same_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LAYOUTS, "ticks", dict(LAYOUTS["ticks"]))
    with pytest.raises(ValueError, match="a ticks layout named 'plain' is registered already"):
        register(PlainTicks())


def test_a_layout_of_an_unknown_kind_is_refused_listing_the_kinds() -> None:
    class Candles(PlainTicks):
        kind = "candles"

    with pytest.raises(ValueError, match="valid kinds: ticks, dom, sentiment"):
        register(Candles())


def test_forcing_an_unregistered_layout_lists_the_registered_ones(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("timestamp,bid,ask\n2023-11-14T10:00:00,1.1,1.2\n")
    with pytest.raises(ValueError, match="unknown layout 'csv'; valid layouts: plain, lean"):
        inspect_tick_files(path, layout="csv")
