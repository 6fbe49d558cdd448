"""The request-head limits, fed the way a network delivers bytes: in pieces of any size."""

from __future__ import annotations

import pytest

from market_data_services.app.httpd import HttpLimits, _HeadMeter

LIMITS = HttpLimits(max_request_line_bytes=100, max_header_bytes=200)


def head(line_bytes: int, field_bytes: int) -> bytes:
    """A head whose request line and header fields (line ends included) have these sizes."""
    line = b"GET /" + b"a" * (line_bytes - len(b"GET / HTTP/1.1")) + b" HTTP/1.1\r\n"
    field = b"X: " + b"b" * (field_bytes - len(b"X: \r\n")) + b"\r\n"
    assert (len(line) - 2, len(field)) == (line_bytes, field_bytes)
    return line + field + b"\r\n"


def verdict(data: bytes, piece: int) -> str | None:
    meter = _HeadMeter(LIMITS)
    for start in range(0, len(data), piece):
        refusal = meter.feed(data[start : start + piece])
        if refusal is not None:
            return refusal.reason
    return None


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, 4096])
def test_limits_hold_however_the_bytes_are_split(piece: int) -> None:
    # The blank line ending the head is not a header field: 198 + 2 fits in 200.
    assert verdict(head(100, 198), piece) is None
    assert verdict(head(101, 10), piece) == "request_line_too_long"
    assert verdict(head(50, 203), piece) == "header_fields_too_large"
    # A body after a complete head is not counted as header bytes.
    assert verdict(head(50, 100) + b"z" * 10_000, piece) is None


def test_a_line_without_an_end_is_refused_once_past_the_limit() -> None:
    meter = _HeadMeter(LIMITS)
    assert meter.feed(b"GET /" + b"a" * 97) is None
    assert meter.feed(b"aaaa") is not None
