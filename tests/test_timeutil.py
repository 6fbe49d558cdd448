from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from market_data_services.timeutil import (
    DayStart,
    epoch_to_ms,
    format_ms,
    parse_day_start,
    parse_timestamp_ms,
    parse_zone,
    unit_by_magnitude,
    zone_name,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("UTC", "UTC"),
        ("z", "UTC"),
        ("UTC-05:00", "UTC-05:00"),
        ("UTC-5", "UTC-05:00"),
        ("-0500", "UTC-05:00"),
        ("GMT+5:30", "UTC+05:30"),
        ("UTC+00:00", "UTC"),
        ("America/New_York", "America/New_York"),
    ],
)
def test_zones_are_read_from_names_and_fixed_offsets(text: str, name: str) -> None:
    assert zone_name(parse_zone(text)) == name


def test_fixed_offset_zone_ignores_dst() -> None:
    zone = parse_zone("UTC-05:00")
    summer = datetime(2014, 7, 1, 12, tzinfo=zone)
    winter = datetime(2014, 1, 1, 12, tzinfo=zone)
    assert summer.utcoffset() == winter.utcoffset()


@pytest.mark.parametrize("text", ["Mars/Olympus", "UTC+25:00", "", "5 hours"])
def test_bad_zones_are_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        parse_zone(text)


def test_new_york_day_start_follows_dst_in_utc() -> None:
    day_start = parse_day_start("17:00 America/New_York")
    assert format_ms(day_start.at(date(2014, 3, 7))) == "2014-03-07T22:00:00.000Z"  # EST
    assert format_ms(day_start.at(date(2014, 3, 10))) == "2014-03-10T21:00:00.000Z"  # EDT


def test_boundaries_cover_the_range_with_short_and_long_days() -> None:
    day_start = parse_day_start("00:00 America/New_York")
    start, end = ms("2014-03-08T12:00:00+00:00"), ms("2014-11-03T12:00:00+00:00")
    bounds = day_start.boundaries(start, end)
    assert bounds[0] <= start < bounds[1]
    assert bounds[-2] <= end < bounds[-1]
    lengths = {b - a for a, b in itertools.pairwise(bounds)}
    assert lengths == {23 * 3_600_000, 24 * 3_600_000, 25 * 3_600_000}


def test_day_of_places_a_moment_in_its_trading_day() -> None:
    day_start = parse_day_start("17:00 America/New_York")
    # 16:59 New York on May 2 belongs to the day that began 17:00 May 1.
    assert day_start.day_of(ms("2014-05-02T20:59:00+00:00")) == date(2014, 5, 1)
    assert day_start.day_of(ms("2014-05-02T21:00:00+00:00")) == date(2014, 5, 2)


def test_day_start_spelling_round_trips() -> None:
    for text in ("00:00 UTC", "17:00 America/New_York", "00:00 UTC-05:00", "09:30 UTC+05:30"):
        assert str(parse_day_start(text)) == text
    assert str(parse_day_start("7:05")) == "07:05 UTC"


def test_fixed_day_start_offset_is_where_the_day_starts_after_utc_midnight() -> None:
    assert parse_day_start("00:00 UTC-05:00").offset_ms == 5 * 3_600_000
    assert parse_day_start("17:00 UTC-04:00").offset_ms == 21 * 3_600_000


@pytest.mark.parametrize("text", ["25:00 UTC", "17:00 Nowhere/City", "five pm", "17h"])
def test_bad_day_starts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"day start|time zone"):
        parse_day_start(text)


def test_day_start_dataclass_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="between 00:00 and 23:59"):
        DayStart(hour=24, minute=0, zone=UTC)


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2014-05-01T00:00:01.787", "UTC-05:00", "2014-05-01T05:00:01.787Z"),
        ("2014-05-01 00:00:01.787Z", "America/New_York", "2014-05-01T00:00:01.787Z"),
        ("2014-05-01T02:00:00+02:00", "UTC", "2014-05-01T00:00:00.000Z"),
        ("2014-05-01", "America/New_York", "2014-05-01T04:00:00.000Z"),
        ("1398902401787", "UTC-05:00", "2014-05-01T00:00:01.787Z"),
    ],
)
def test_timestamps_are_read_as_iso_or_epoch_ms(text: str, zone: str, expected: str) -> None:
    assert format_ms(parse_timestamp_ms(text, parse_zone(zone))) == expected


def test_iso_microseconds_are_truncated_to_the_millisecond() -> None:
    assert parse_timestamp_ms("2014-05-01T00:00:00.999999") == ms("2014-05-01T00:00:00.999+00:00")


def test_bad_timestamp_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="neither ISO-8601"):
        parse_timestamp_ms("yesterday")


def test_zoneinfo_is_available_for_new_york() -> None:
    assert ZoneInfo("America/New_York").key == "America/New_York"


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("1398902400", "s", 1_398_902_400_000),
        ("1398902400.1239", "s", 1_398_902_400_123),  # exact decimal, rounded down
        ("1398902400123", "ms", 1_398_902_400_123),
        ("1398902400123999", "us", 1_398_902_400_123),
        ("1398902400123999999", "ns", 1_398_902_400_123),
        ("1398902400", "auto", 1_398_902_400_000),
        ("1398902400123999", "auto", 1_398_902_400_123),
    ],
)
def test_epoch_numbers_are_read_in_the_stated_unit_or_by_magnitude(
    text: str, unit: str, expected: int
) -> None:
    assert parse_timestamp_ms(text, unit=unit) == expected


def test_magnitude_gives_every_time_from_1990_to_2100_its_own_unit() -> None:
    step = (4_102_444_800 - 631_152_000) // 997  # seconds from 1990 to 2100, odd steps
    for seconds in range(631_152_000, 4_102_444_800, step):
        for unit, scale in (("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)):
            number = seconds * scale + scale // 3
            assert unit_by_magnitude(number) == unit
            assert epoch_to_ms(number, "auto") == seconds * 1000 + (scale // 3) * 1000 // scale


def test_an_unknown_time_unit_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid units: auto, s, ms, us, ns"):
        epoch_to_ms(1, "minutes")
