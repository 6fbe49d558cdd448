"""HTTP basic authentication for the scrape and health endpoints, priced for an attacker.

A stored password is a PBKDF2-SHA256 hash (``mds config hash-password``), a bcrypt hash
(``mds config hash-password --bcrypt``, or the ``basic_auth_users`` of an exporter-toolkit
web configuration file) or, for a single user, a plain password. Three rules keep a
password-guessing client from costing the server, or telling it anything:

- Constant work: an unknown username is checked against a dummy hash of the same cost,
  so a wrong username takes as long as a wrong password (one hash either way).
- A failed-attempt limiter per client address: after ``max_failures`` failures within
  ``window_seconds`` the address gets 429 with Retry-After, without any hash work, until
  its oldest failure leaves the window. The table of addresses is bounded.
- A cache of successful verifications: a keyed digest (HMAC with a per-process random
  key) of the whole Authorization header, for ``cache_seconds``, so a scraper pays the
  hash once, not on every scrape. A cached header passes even from a throttled address
  (a scraper behind the same NAT as a guesser keeps scraping).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import bcrypt

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
DEFAULT_BCRYPT_COST = 10  # exporter-toolkit's documented example cost
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_BCRYPT_MAX_BYTES = 72  # bcrypt reads no further; longer passwords are refused

#: Limiter and cache defaults (documented in the README, "Security").
DEFAULT_MAX_FAILURES = 5
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_MAX_ADDRESSES = 10_000
DEFAULT_CACHE_SECONDS = 300.0
DEFAULT_CACHE_ENTRIES = 64


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (salt and hash in base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join(
        (
            ALGORITHM,
            str(iterations),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def hash_password_bcrypt(password: str, *, cost: int = DEFAULT_BCRYPT_COST) -> str:
    """A ``$2b$`` bcrypt hash, as the exporter-toolkit's ``basic_auth_users`` take."""
    encoded = password.encode()
    if len(encoded) > _BCRYPT_MAX_BYTES:
        raise ValueError(f"bcrypt takes passwords up to {_BCRYPT_MAX_BYTES} bytes")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=cost)).decode()


@dataclass(frozen=True)
class PasswordHash:
    """A parsed stored hash: ``kind`` is ``pbkdf2_sha256`` or ``bcrypt``."""

    kind: str
    text: str
    iterations: int = 0  # pbkdf2 only
    salt: bytes = b""  # pbkdf2 only
    digest: bytes = b""  # pbkdf2 only

    def verify(self, password: bytes) -> bool:
        """One full hash computation, whatever the outcome."""
        if self.kind == "bcrypt":
            too_long = len(password) > _BCRYPT_MAX_BYTES
            ok = bcrypt.checkpw(password[:_BCRYPT_MAX_BYTES], self.text.encode())
            return ok and not too_long
        derived = hashlib.pbkdf2_hmac("sha256", password, self.salt, self.iterations)
        return hmac.compare_digest(derived, self.digest)

    def dummy(self) -> PasswordHash:
        """A hash of the same kind and cost that no password matches (for unknown users)."""
        if self.kind == "bcrypt":
            cost = int(self.text[4:6])
            text = bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt(rounds=cost)).decode()
            return PasswordHash("bcrypt", text)
        return PasswordHash(
            ALGORITHM,
            "",
            iterations=self.iterations,
            salt=secrets.token_bytes(len(self.salt) or 16),
            digest=secrets.token_bytes(len(self.digest) or 32),
        )


def parse_password_hash(text: str) -> PasswordHash:
    """A stored PBKDF2 or bcrypt hash; ValueError saying what is wrong."""
    if text.startswith(_BCRYPT_PREFIXES):
        cost = text[4:6]
        if len(text) != 60 or not cost.isdigit() or not 4 <= int(cost) <= 31 or text[6] != "$":
            raise ValueError("a bcrypt hash must look like $2y$<cost 04..31>$<53 characters>")
        return PasswordHash("bcrypt", text)
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise ValueError(
            f"must look like {ALGORITHM}$<iterations>$<salt>$<hash> or a bcrypt $2y$... "
            "hash (make one with `mds config hash-password`)"
        )
    if not parts[1].isdigit() or int(parts[1]) < 1:
        raise ValueError(f"iterations must be a positive integer, got {parts[1]!r}")
    try:
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except binascii.Error:
        raise ValueError("salt and hash must be base64") from None
    return PasswordHash(ALGORITHM, text, iterations=int(parts[1]), salt=salt, digest=digest)


@dataclass(frozen=True)
class Verdict:
    """The answer to one request: allowed, or refused (401), or throttled (429)."""

    ok: bool
    #: Set when the client address is throttled: whole seconds until it may try again.
    retry_after_seconds: int | None = None


class FailureLimiter:
    """Failed attempts per client address in a sliding window, in a bounded table.

    An address with ``max_failures`` failures in the last ``window_seconds`` is throttled
    until the oldest of them is ``window_seconds`` old. IPv6 addresses count per /64 (one
    host usually holds a whole /64). When the table is full the address touched least
    recently is forgotten.
    """

    def __init__(
        self,
        *,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or not window_seconds > 0 or max_addresses < 1:
            raise ValueError(
                "max_failures and max_addresses must be >= 1 and window_seconds > 0, got "
                f"{max_failures}, {max_addresses}, {window_seconds}"
            )
        self._max = max_failures
        self._window = window_seconds
        self._capacity = max_addresses
        self._clock = clock
        # Address -> times of its recent failures (at most max_failures); guarded by _lock.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(address: str) -> str:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        if ip.version == 6:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    def retry_after(self, address: str) -> float | None:
        """Seconds until the address may try again, or None when it may now."""
        key = self._key(address)
        now = self._clock()
        with self._lock:
            times = self._failures.get(key)
            if times is None or len(times) < self._max:
                return None
            wait = times[0] + self._window - now
            if wait <= 0:
                return None
            return wait

    def failed(self, address: str) -> None:
        key = self._key(address)
        now = self._clock()
        with self._lock:
            times = self._failures.pop(key, None)
            if times is None:
                times = deque(maxlen=self._max)
                while len(self._failures) >= self._capacity:
                    self._failures.popitem(last=False)
            while times and times[0] + self._window <= now:
                times.popleft()
            times.append(now)
            self._failures[key] = times

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(self._key(address), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures)


class BasicAuth:
    """Checks an ``Authorization: Basic ...`` header against a table of users."""

    def __init__(
        self,
        username: str,
        *,
        password: str | None = None,
        password_hash: str | None = None,
        limiter: FailureLimiter | None = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (password is None) == (password_hash is None):
            raise ValueError("give exactly one of password and password_hash")
        self._plain: tuple[bytes, bytes] | None = None
        self._users: dict[bytes, PasswordHash] = {}
        if password is not None:
            self._plain = (username.encode(), password.encode())
        else:
            assert password_hash is not None
            self._users = {username.encode(): parse_password_hash(password_hash)}
        self._setup(limiter, cache_seconds, clock)

    @classmethod
    def from_hashes(
        cls,
        users: Mapping[str, str],
        *,
        limiter: FailureLimiter | None = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> BasicAuth:
        """Several users, each with a PBKDF2 or bcrypt hash (``basic_auth_users``)."""
        if not users:
            raise ValueError("give at least one user")
        auth = cls.__new__(cls)
        auth._plain = None
        auth._users = {name.encode(): parse_password_hash(text) for name, text in users.items()}
        auth._setup(limiter, cache_seconds, clock)
        return auth

    def _setup(
        self, limiter: FailureLimiter | None, cache_seconds: float, clock: Callable[[], float]
    ) -> None:
        self._limiter = FailureLimiter(clock=clock) if limiter is None else limiter
        self._cache_seconds = cache_seconds
        self._clock = clock
        # Unknown usernames are checked against this: same kind and cost as a real user's.
        self._dummy = next(iter(self._users.values())).dummy() if self._users else None
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # Keyed digest of a verified header -> when it expires; guarded by _lock.
        self._verified: OrderedDict[bytes, float] = OrderedDict()
        # Full hash computations so far (tests and the README's numbers); guarded by _lock.
        self._hash_count = 0

    @property
    def hash_count(self) -> int:
        """How many full password hashes were computed (unknown users included)."""
        with self._lock:
            return self._hash_count

    @property
    def limiter(self) -> FailureLimiter:
        return self._limiter

    def check(self, header: str | None, *, client: str = "") -> bool:
        """Whether the header carries a user's credentials (throttling counts as no)."""
        return self.authenticate(header, client=client).ok

    def authenticate(self, header: str | None, *, client: str = "") -> Verdict:
        """The verdict for one request's Authorization header from ``client`` (an address).

        A missing or malformed header is refused without counting as a failure: it costs
        nothing and guesses nothing.
        """
        credentials = _decode(header)
        if credentials is None:
            return Verdict(False)
        assert header is not None
        username, password = credentials
        if self._plain is not None:
            # Nothing slow to protect: compare both halves, always both.
            user_ok = hmac.compare_digest(username, self._plain[0])
            password_ok = hmac.compare_digest(password, self._plain[1])
            return Verdict(user_ok and password_ok)
        fingerprint = hmac.new(self._key, header.encode(), hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            expires = self._verified.get(fingerprint)
            if expires is not None and expires > now:
                return Verdict(True)
        wait = self._limiter.retry_after(client)
        if wait is not None:
            return Verdict(False, retry_after_seconds=max(1, math.ceil(wait)))
        stored = self._users.get(username)
        assert self._dummy is not None
        ok = (stored or self._dummy).verify(password) and stored is not None
        with self._lock:
            self._hash_count += 1
            if ok:
                self._verified[fingerprint] = now + self._cache_seconds
                self._verified.move_to_end(fingerprint)
                while len(self._verified) > DEFAULT_CACHE_ENTRIES:
                    self._verified.popitem(last=False)
        if ok:
            self._limiter.succeeded(client)
        else:
            self._limiter.failed(client)
        return Verdict(ok)


def _decode(header: str | None) -> tuple[bytes, bytes] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    username, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return username, password
