"""Time zones, day starts and timestamps as users write them.

Everything stored is UTC epoch milliseconds; this module turns what a user or a vendor's
file says into that:

- a zone: an IANA name (``America/New_York``, through :mod:`zoneinfo`, with the
  ``tzdata`` package as the database where the system has none), ``UTC``, or a fixed
  offset (``UTC-05:00``, ``UTC+5:30``, ``-05:00``), which never observes DST;
- a day start: ``"HH:MM ZONE"`` (``"17:00 America/New_York"``), the moment each daily
  candle opens, correct across DST changes;
- a timestamp: ISO-8601 (``2014-05-01T00:00:01.787``, in the given zone when it carries
  no offset) or an epoch number in a stated unit (``s``, ``ms``, ``us``, ``ns``), or in
  the unit its magnitude tells (``auto``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MS_PER_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

_OFFSET = re.compile(
    r"^(?:(?:UTC|GMT)\s*)?(?P<sign>[+-])(?P<hours>\d{1,2})(?::?(?P<minutes>\d{2}))?$",
    re.IGNORECASE,
)
_DAY_START = re.compile(r"^\s*(?P<hour>\d{1,2}):(?P<minute>\d{2})(?:\s+(?P<zone>\S+))?\s*$")
_EPOCH_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d*)?$", re.ASCII)  # ASCII: not other scripts' digits

#: Units of epoch numbers; ``auto`` tells s, ms, us or ns from the number's magnitude.
TIME_UNITS = ("auto", "s", "ms", "us", "ns")
EPOCH_UNITS = TIME_UNITS[1:]
#: Milliseconds per unit, as (multiplier, divisor).
_PER_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
#: Magnitude limits of ``unit_by_magnitude``: below 1e11 seconds, then ms, then us, then ns.
_MAGNITUDES = ((10**11, "s"), (10**14, "ms"), (10**17, "us"))
#: 1990-01-01T00:00:00Z: no market data we load is older, so an earlier time is a misread
#: unit or column (epoch seconds read as ms land in January 1970).
EARLIEST_MS = 631_152_000_000
#: 9999-12-31T23:59:59.999Z, the last moment a datetime can show.
LATEST_MS = 253_402_300_799_999

ZONE_EXAMPLES = "UTC, America/New_York, Europe/London, UTC-05:00, UTC+05:30"


def parse_zone(text: str) -> tzinfo:
    """A zone from an IANA name, ``UTC``/``Z``, or a fixed offset such as ``UTC-05:00``.

    A fixed offset gets a :class:`datetime.timezone` named like ``UTC-05:00``, so
    ``zone_name`` gives back a canonical spelling.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"time zone must be a name or offset such as {ZONE_EXAMPLES}")
    name = text.strip()
    if name.upper() in {"UTC", "Z", "GMT", "UTC+00:00", "UTC-00:00"}:
        return UTC
    match = _OFFSET.match(name)
    if match:
        hours = int(match["hours"])
        minutes = int(match["minutes"] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"time zone offset {name!r} is out of range (at most ±23:59)")
        delta = timedelta(hours=hours, minutes=minutes)
        if match["sign"] == "-":
            delta = -delta
        if not delta:
            return UTC
        return timezone(delta, _offset_name(delta))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name or a fixed offset, e.g. {ZONE_EXAMPLES}"
        ) from None


def _offset_name(delta: timedelta) -> str:
    total = int(delta.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def zone_name(zone: tzinfo) -> str:
    """The canonical spelling of a zone from :func:`parse_zone` (``UTC``, ``UTC-05:00``, ...)."""
    if zone is UTC:
        return "UTC"
    if isinstance(zone, ZoneInfo):
        return zone.key
    if isinstance(zone, timezone):
        offset = zone.utcoffset(None)
        return "UTC" if not offset else _offset_name(offset)
    return str(zone)


@dataclass(frozen=True, kw_only=True)
class DayStart:
    """When a trading day begins: a local time of day in a zone (default ``00:00 UTC``).

    ``17:00 America/New_York`` is the forex convention; it moves with DST in UTC terms.
    A day start that falls in a DST gap is read with the offset before the change
    (02:30 on a spring-forward day becomes 03:30 local); an ambiguous one takes the
    first occurrence.
    """

    hour: int = 0
    minute: int = 0
    zone: tzinfo = UTC

    def __post_init__(self) -> None:
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            raise ValueError(
                f"day start must be a time of day HH:MM between 00:00 and 23:59, "
                f"got {self.hour:02d}:{self.minute:02d}"
            )

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d} {zone_name(self.zone)}"

    def at(self, day: date) -> int:
        """UTC epoch ms at which the trading day named ``day`` (a local date) begins."""
        local = datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=self.zone)
        return (local - _EPOCH) // _ONE_MS

    def day_of(self, ts_ms: int) -> date:
        """The local date whose trading day contains ``ts_ms``."""
        moment = datetime.fromtimestamp(ts_ms / 1000, self.zone)
        day = moment.date()
        if ts_ms < self.at(day):
            day -= timedelta(days=1)
        elif ts_ms >= self.at(day + timedelta(days=1)):  # pragma: no cover - defensive
            day += timedelta(days=1)
        return day

    def boundaries(self, start_ms: int, end_ms: int) -> list[int]:
        """Day starts (UTC epoch ms, ascending) from the one at or before ``start_ms`` to
        the first one after ``end_ms``: every moment in between falls in
        ``[b[i], b[i+1])`` for some i."""
        if end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} is before start_ms {start_ms}")
        day = self.day_of(start_ms)
        result = [self.at(day)]
        while result[-1] <= end_ms:
            day += timedelta(days=1)
            result.append(self.at(day))
        return result

    @property
    def is_fixed(self) -> bool:
        """Whether every day is 24 h long in UTC (no DST in the zone)."""
        return self.zone is UTC or isinstance(self.zone, timezone)

    @property
    def offset_ms(self) -> int:
        """For a fixed zone: where a day starts, as ms after UTC midnight (0 <= x < 1 day)."""
        if not self.is_fixed:
            raise ValueError(f"{self} has no fixed offset")
        offset = self.zone.utcoffset(None) or timedelta()
        local_ms = (self.hour * 60 + self.minute) * 60_000
        return (local_ms - int(offset.total_seconds()) * 1000) % _MS_PER_DAY


def parse_day_start(text: str) -> DayStart:
    """``"HH:MM ZONE"`` (zone optional, UTC by default), e.g. ``"17:00 America/New_York"``."""
    if not isinstance(text, str):
        raise ValueError(f"day start must be text like '17:00 America/New_York', got {text!r}")
    match = _DAY_START.match(text)
    if not match:
        raise ValueError(
            f"day start must look like 'HH:MM ZONE' (e.g. '00:00 UTC', "
            f"'17:00 America/New_York', '00:00 UTC-05:00'), got {text!r}"
        )
    zone = parse_zone(match["zone"]) if match["zone"] else UTC
    return DayStart(hour=int(match["hour"]), minute=int(match["minute"]), zone=zone)


def is_epoch_number(text: str) -> bool:
    """Whether ``text`` is an epoch number (digits, maybe a sign and a fraction)."""
    return bool(_EPOCH_NUMBER.match(text.strip()))


def unit_by_magnitude(number: int) -> str:
    """The epoch unit of ``number`` told by its size: below 1e11 s, below 1e14 ms, below
    1e17 us, else ns.

    Read so, every time from 1973 to 5138 gets its own unit: the ranges of the four units
    between 1990 and now are orders of magnitude apart, so a plausible time has exactly
    one reading.
    """
    size = abs(number)
    for limit, unit in _MAGNITUDES:
        if size < limit:
            return unit
    return "ns"


def epoch_to_ms(number: str | int, unit: str) -> int:
    """UTC epoch ms of an epoch number (an int, or text with an optional fraction) in
    ``unit`` (``auto``: by magnitude), rounded down to the millisecond."""
    if unit not in TIME_UNITS:
        raise ValueError(f"unknown time unit {unit!r}; valid units: {', '.join(TIME_UNITS)}")
    if isinstance(number, str):
        text = number.strip()
        if not _EPOCH_NUMBER.match(text):
            raise ValueError(f"{number!r} is not an epoch number")
        whole = int(text.split(".", 1)[0])
        exact: int | Decimal = whole if "." not in text else Decimal(text)
    else:
        whole = exact = int(number)
    if unit == "auto":
        unit = unit_by_magnitude(whole)
    multiplier, divisor = _PER_MS[unit]
    if isinstance(exact, int):
        return exact * multiplier // divisor
    # Exact decimal arithmetic: 1398902400.123 s is 1398902400123 ms, not ...122.
    scaled = exact * multiplier / divisor
    return int(scaled.to_integral_value(rounding=ROUND_FLOOR))


def parse_timestamp_ms(text: str, zone: tzinfo = UTC, *, unit: str = "ms") -> int:
    """UTC epoch ms from ISO-8601 (``zone`` applies when it has no offset) or an epoch
    number in ``unit`` (epoch ms unless told otherwise; ``auto``: by magnitude).

    A bare date (``2014-05-01``) is its midnight in ``zone``.
    """
    value = text.strip()
    if _EPOCH_NUMBER.match(value):
        return epoch_to_ms(value, unit)
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        what = "epoch milliseconds" if unit == "ms" else f"an epoch number ({unit})"
        raise ValueError(
            f"timestamp {text!r} is neither ISO-8601 (2014-05-01T13:45:00.250) nor {what}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    # Integer arithmetic: exact for every millisecond (float seconds would round).
    return (moment - _EPOCH) // _ONE_MS


def utc_iso(unix_seconds: float) -> str:
    """``2025-01-08T10:15:23.123Z``: the one way we write a moment for people and JSON."""
    moment = datetime.fromtimestamp(unix_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_ms(ts_ms: int) -> str:
    """``2014-05-01T05:00:01.787Z`` for UTC epoch milliseconds."""
    return utc_iso(ts_ms / 1000)


__all__ = [
    "EARLIEST_MS",
    "EPOCH_UNITS",
    "LATEST_MS",
    "TIME_UNITS",
    "DayStart",
    "epoch_to_ms",
    "format_ms",
    "is_epoch_number",
    "parse_day_start",
    "parse_timestamp_ms",
    "parse_zone",
    "unit_by_magnitude",
    "utc_iso",
    "zone_name",
]
