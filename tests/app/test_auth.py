"""Basic authentication priced for an attacker: constant work, a limiter, a cache."""

from __future__ import annotations

import base64

import pytest

from market_data_services.app.auth import (
    BasicAuth,
    FailureLimiter,
    hash_password,
    hash_password_bcrypt,
    parse_password_hash,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make_auth(clock: Clock, *, max_failures: int = 3, window: float = 60.0) -> BasicAuth:
    limiter = FailureLimiter(max_failures=max_failures, window_seconds=window, clock=clock)
    return BasicAuth.from_hashes(
        {
            "prom": hash_password("s3cret", iterations=1000),
            "ops": hash_password_bcrypt("pw", cost=4),
        },
        limiter=limiter,
        clock=clock,
    )


def test_a_wrong_username_costs_the_same_hash_work_as_a_wrong_password() -> None:
    auth = make_auth(Clock(), max_failures=100)
    before = auth.hash_count
    assert not auth.check(basic("nobody", "s3cret"), client="10.0.0.1")
    unknown_user = auth.hash_count - before
    before = auth.hash_count
    assert not auth.check(basic("prom", "wrong"), client="10.0.0.1")
    wrong_password = auth.hash_count - before
    before = auth.hash_count
    assert auth.check(basic("prom", "s3cret"), client="10.0.0.2")
    right = auth.hash_count - before
    assert unknown_user == wrong_password == right == 1


@pytest.mark.parametrize(
    "stored",
    [hash_password("pw", iterations=1000), hash_password_bcrypt("pw", cost=4)],
    ids=["pbkdf2", "bcrypt"],
)
def test_pbkdf2_and_bcrypt_hashes_both_verify(stored: str) -> None:
    auth = BasicAuth("prom", password_hash=stored)
    assert auth.check(basic("prom", "pw"), client="10.0.0.1")
    assert not auth.check(basic("prom", "pW"), client="10.0.0.2")


def test_bcrypt_hashes_of_the_exporter_toolkit_kind_verify() -> None:
    # htpasswd and the exporter-toolkit docs write $2y$; Python's bcrypt writes $2b$.
    stored = "$2y$" + hash_password_bcrypt("pw", cost=4)[4:]
    assert BasicAuth.from_hashes({"alice": stored}).check(basic("alice", "pw"))


def test_a_bcrypt_password_over_72_bytes_is_refused_not_truncated() -> None:
    stored = hash_password_bcrypt("a" * 72, cost=4)
    auth = BasicAuth("prom", password_hash=stored)
    assert auth.check(basic("prom", "a" * 72))
    assert not auth.check(basic("prom", "a" * 73), client="10.0.0.9")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", "must look like"),
        ("pbkdf2_sha256$x$AAAA$AAAA", "iterations must be a positive integer"),
        ("pbkdf2_sha256$10$!!$AAAA", "base64"),
        ("$2y$99$" + "a" * 53, "bcrypt hash must look like"),
        ("$2y$10$short", "bcrypt hash must look like"),
    ],
)
def test_a_bad_stored_hash_is_refused_saying_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_password_hash(text)


def test_the_limiter_answers_throttled_without_hashing_and_recovers_after_the_window() -> None:
    clock = Clock()
    auth = make_auth(clock, max_failures=3, window=60.0)
    for _ in range(3):
        assert (
            auth.authenticate(basic("prom", "guess"), client="10.0.0.1").retry_after_seconds is None
        )
        clock.now += 1
    hashes = auth.hash_count
    verdict = auth.authenticate(basic("prom", "s3cret"), client="10.0.0.1")
    assert not verdict.ok
    assert verdict.retry_after_seconds == 57  # the first failure leaves the window at +60 s
    assert auth.hash_count == hashes  # refused before any hash work
    # Another address is not affected.
    assert auth.check(basic("prom", "s3cret"), client="10.0.0.2")
    clock.now += 57
    assert auth.authenticate(basic("prom", "s3cret"), client="10.0.0.1").ok


def test_ipv6_clients_count_per_64_prefix() -> None:
    clock = Clock()
    auth = make_auth(clock, max_failures=2)
    auth.check(basic("prom", "x"), client="2001:db8::1")
    auth.check(basic("prom", "x"), client="2001:db8::2")
    verdict = auth.authenticate(basic("prom", "x"), client="2001:db8::ffff:3")
    assert verdict.retry_after_seconds is not None
    assert auth.authenticate(basic("prom", "x"), client="2001:db8:1::1").retry_after_seconds is None


def test_the_table_of_addresses_is_bounded() -> None:
    limiter = FailureLimiter(max_failures=2, max_addresses=100, clock=Clock())
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100


def test_a_verified_header_is_cached_and_expires() -> None:
    clock = Clock()
    limiter = FailureLimiter(clock=clock)
    auth = BasicAuth(
        "prom",
        password_hash=hash_password("s3cret", iterations=1000),
        limiter=limiter,
        cache_seconds=300,
        clock=clock,
    )
    for _ in range(10):
        assert auth.check(basic("prom", "s3cret"), client="10.0.0.1")
        clock.now += 15
    assert auth.hash_count == 1  # one hash, then nine scrapes from the cache
    clock.now += 300
    assert auth.check(basic("prom", "s3cret"), client="10.0.0.1")
    assert auth.hash_count == 2


def test_a_cached_scraper_keeps_scraping_while_its_address_is_throttled() -> None:
    clock = Clock()
    auth = make_auth(clock, max_failures=2)
    assert auth.check(basic("prom", "s3cret"), client="10.0.0.1")
    for _ in range(2):
        auth.check(basic("prom", "guess"), client="10.0.0.1")
    assert auth.authenticate(basic("prom", "guess"), client="10.0.0.1").retry_after_seconds
    assert auth.check(basic("prom", "s3cret"), client="10.0.0.1")


def test_malformed_headers_are_refused_without_hash_work() -> None:
    auth = make_auth(Clock())
    for header in (
        None,
        "",
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"prom").decode(),
    ):
        assert not auth.check(header, client="10.0.0.1")
    assert auth.hash_count == 0
    assert len(auth.limiter) == 0
