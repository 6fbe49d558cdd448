"""HTTP basic authentication for the scrape and health endpoints.

Passwords are compared in constant time. A stored password may be a PBKDF2-SHA256 hash
(``mds config hash-password`` makes one) so the config file holds no secret in the
clear. Deriving the hash is deliberately slow, so, like Prometheus's exporter-toolkit,
a verified credential is remembered (as its SHA-256) and later requests with it cost
one fast comparison.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256


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


def parse_password_hash(text: str) -> tuple[int, bytes, bytes]:
    """Iterations, salt and digest of a stored hash; ValueError saying what is wrong."""
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise ValueError(
            f"must look like {ALGORITHM}$<iterations>$<salt>$<hash> "
            "(make one with `mds config hash-password`)"
        )
    if not parts[1].isdigit() or int(parts[1]) < 1:
        raise ValueError(f"iterations must be a positive integer, got {parts[1]!r}")
    try:
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except binascii.Error:
        raise ValueError("salt and hash must be base64") from None
    return int(parts[1]), salt, digest


class BasicAuth:
    """Checks an ``Authorization: Basic ...`` header against one user."""

    def __init__(
        self, username: str, *, password: str | None = None, password_hash: str | None = None
    ) -> None:
        if (password is None) == (password_hash is None):
            raise ValueError("give exactly one of password and password_hash")
        self._username = username.encode()
        self._password = None if password is None else password.encode()
        self._hash = None if password_hash is None else parse_password_hash(password_hash)
        # SHA-256 of the last credentials that verified against the hash; guarded by _lock.
        self._lock = threading.Lock()
        self._verified: bytes | None = None

    def check(self, header: str | None) -> bool:
        """Whether the header carries this user's credentials."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        username, sep, password = decoded.partition(b":")
        if not sep:
            return False
        user_ok = hmac.compare_digest(username, self._username)
        if self._password is not None:
            password_ok = hmac.compare_digest(password, self._password)
            return user_ok and password_ok
        return self._check_hash(password) and user_ok

    def _check_hash(self, password: bytes) -> bool:
        assert self._hash is not None
        fingerprint = hashlib.sha256(password).digest()
        with self._lock:
            known = self._verified
        if known is not None and hmac.compare_digest(fingerprint, known):
            return True
        iterations, salt, digest = self._hash
        ok = hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", password, salt, iterations), digest)
        if ok:
            with self._lock:
                self._verified = fingerprint
        return ok
