"""Which live instance works which symbol: PostgreSQL session advisory locks.

Several ``mds run`` instances on one PostgreSQL database split each service's symbols
without a coordinator of our own; the database's lock table is the registry:

- An instance's service is *live* while it holds its member lock
  ``(members key of the service, a random instance key)`` on a dedicated connection.
- It *owns* a symbol while it holds ``(symbols key of the service, the symbol's key)`` on
  that same connection. A session lock lasts until it is released or the session ends,
  so a process that dies (``kill -9``, a lost host) drops all its locks at once: the
  server ends the session when the socket closes or, for a host that vanished, when its
  TCP keepalives go unanswered (``Timeouts``'s keepalives, set on both ends, make that
  seconds).
- ``pg_locks`` shows every instance the others: with k live instances an instance claims
  at most ceil(n / k) of the n symbols, releases what is over that (someone joined) and
  takes free ones up to it (someone left or died), at the start of each iteration.
- ``mds backfill`` takes the backfill key of a symbol, then waits for its symbol key:
  a running owner sees the backfill key at its next claim and lets the symbol go, and
  takes it back once the backfill ends. The two never work one symbol at once.

Keys are two int4s (``pg_advisory_lock(int, int)``), kept non-negative because
``pg_locks`` shows them as unsigned ``oid``. Two symbols whose CRC-32 collide share one
lock: still never worked twice, only counted as one for the spread.
"""

from __future__ import annotations

import logging
import math
import secrets
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from market_data_services.storage.engine import Timeouts, create_engine

logger = logging.getLogger(__name__)

_INT4 = 0x7FFFFFFF

#: Every advisory lock of the given key classes in this database: (class, key, backend pid).
_LOCKS_SQL = text(
    "SELECT classid::bigint, objid::bigint, pid FROM pg_locks "
    "WHERE locktype = 'advisory' AND objsubid = 2 AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid::bigint IN (:members, :symbols, :backfill)"
)
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:cls, :key)")
_LOCK = text("SELECT pg_advisory_lock(:cls, :key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:cls, :key)")


def _key(name: str) -> int:
    return zlib.crc32(name.encode()) & _INT4


def symbol_key(symbol: str) -> int:
    """The second half of a symbol's lock (its CRC-32 as a non-negative int4)."""
    return _key(symbol)


@dataclass(frozen=True, slots=True)
class LockClasses:
    """The first halves of one service's three kinds of lock."""

    members: int
    symbols: int
    backfill: int

    @classmethod
    def of(cls, service: str) -> LockClasses:
        prefix = "market_data_services.ownership"
        return cls(
            members=_key(f"{prefix}.members.{service}"),
            symbols=_key(f"{prefix}.symbols.{service}"),
            backfill=_key(f"{prefix}.backfill.{service}"),
        )

    def params(self) -> dict[str, int]:
        return {"members": self.members, "symbols": self.symbols, "backfill": self.backfill}


@dataclass(frozen=True, kw_only=True)
class Claim:
    """What one claim found and did."""

    #: The symbols this instance owns now, in configured order.
    owned: tuple[str, ...]
    #: Live instances of the service (this one included).
    instances: int
    #: ceil(symbols to share / instances): the most this instance may own.
    quota: int
    acquired: tuple[str, ...] = ()
    released: tuple[str, ...] = ()
    #: Configured symbols nobody owns after this claim (a backfill's are not counted).
    unowned: tuple[str, ...] = ()


def _dedicated_engine(engine: Engine, timeouts: Timeouts, application_name: str) -> Engine:
    """An engine of one connection at a time for the locks: not the pool's, since a
    pooled connection is reset and shared, and the locks must live exactly as long as
    the session that took them."""
    return create_engine(
        engine.url,
        timeouts=timeouts,
        poolclass=NullPool,
        connect_args={"application_name": application_name[:63]},
        isolation_level="AUTOCOMMIT",
    )


class SymbolOwnership:
    """One instance's share of one service's symbols (see the module docstring).

    ``claim(symbols)`` opens the dedicated connection on first use (registering the
    instance), then rebalances and returns the ``Claim``. It and ``close()`` are called
    by one thread, the service's loop; the object holds no lock of its own. A failed
    claim closes the connection (releasing every lock: nothing is owned that is not
    known to be) and raises; the next claim reconnects.
    """

    def __init__(
        self,
        engine: Engine,
        service: str,
        *,
        timeouts: Timeouts | None = None,
        application_name: str = "mds",
    ) -> None:
        self._source = engine
        self._service = service
        self._classes = LockClasses.of(service)
        self._timeouts = Timeouts() if timeouts is None else timeouts
        self._application_name = application_name
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._pid = 0
        # This instance's key; also orders the free symbols it tries, so that instances
        # reach for different ones first (rendezvous order) instead of all racing.
        self._instance_key = secrets.randbelow(_INT4)
        self._owned: tuple[str, ...] = ()

    @property
    def service(self) -> str:
        return self._service

    def claim(self, symbols: Sequence[str]) -> Claim:
        try:
            return self._claim(list(dict.fromkeys(symbols)))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        """Release every lock (by ending the session). Safe to call twice."""
        connection, self._connection = self._connection, None
        self._owned = ()
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:  # a dead connection: the server ended the session
                logger.debug("ownership.close_failed", extra={"error": str(exc)})
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- the claim -------------------------------------------------------------------------

    def _connect(self) -> Connection:
        if self._connection is not None:
            return self._connection
        if self._engine is None:
            self._engine = _dedicated_engine(self._source, self._timeouts, self._application_name)
        connection = self._engine.connect()
        try:
            self._pid = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            while not connection.execute(
                _TRY_LOCK, {"cls": self._classes.members, "key": self._instance_key}
            ).scalar_one():
                self._instance_key = secrets.randbelow(_INT4)  # another instance's key
        except Exception:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _claim(self, symbols: list[str]) -> Claim:
        connection = self._connect()
        classes = self._classes
        rows = connection.execute(_LOCKS_SQL, classes.params()).all()
        members = {pid for cls, _, pid in rows if cls == classes.members}
        mine = {key for cls, key, pid in rows if cls == classes.symbols and pid == self._pid}
        others = {key for cls, key, pid in rows if cls == classes.symbols and pid != self._pid}
        in_backfill = {key for cls, key, _ in rows if cls == classes.backfill}

        shared = [s for s in symbols if symbol_key(s) not in in_backfill]
        instances = max(1, len(members | {self._pid}))
        quota = math.ceil(len(shared) / instances)
        owned = [s for s in shared if symbol_key(s) in mine]
        # Let go of what is no longer ours to hold: unconfigured, in a backfill, over quota.
        kept_keys = {symbol_key(s) for s in self._ranked(owned)[:quota]}
        # Symbols sharing a kept key stay too: nobody else could take them.
        keep = {s for s in owned if symbol_key(s) in kept_keys}
        release_keys = mine - kept_keys
        for key in release_keys:
            connection.execute(_UNLOCK, {"cls": classes.symbols, "key": key})
        released = tuple(s for s in self._owned if s not in keep)
        taken = {symbol_key(s) for s in keep}
        acquired: list[str] = []
        for symbol in self._ranked(shared):
            if len(keep) >= quota:
                break
            key = symbol_key(symbol)
            if symbol in keep or key in others:
                continue
            if (
                key in taken
                or connection.execute(_TRY_LOCK, {"cls": classes.symbols, "key": key}).scalar_one()
            ):
                taken.add(key)
                keep.add(symbol)
                if symbol not in self._owned:
                    acquired.append(symbol)
        self._owned = tuple(s for s in symbols if s in keep)
        held = others | taken
        return Claim(
            owned=self._owned,
            instances=instances,
            quota=quota,
            acquired=tuple(acquired),
            released=released,
            unowned=tuple(s for s in shared if symbol_key(s) not in held),
        )

    def _ranked(self, symbols: Sequence[str]) -> list[str]:
        """``symbols`` in this instance's own order of preference."""
        salt = self._instance_key.to_bytes(4, "big")
        return sorted(symbols, key=lambda s: zlib.crc32(salt + s.encode()))


@contextmanager
def symbols_for_backfill(
    engine: Engine,
    service: str,
    symbols: Sequence[str],
    *,
    on_wait: Callable[[int], None] | None = None,
) -> Iterator[Connection | None]:
    """Hold ``symbols`` of ``service`` against every running instance for the block.

    On PostgreSQL: takes the symbols' backfill keys (running owners then let them go at
    their next claim, within one interval), then waits for each symbol key. On SQLite,
    nothing to take (one ``mds run`` per file; see ``SqliteRunLock``). Yields the
    dedicated connection, or None. ``on_wait(n)`` is called before waiting for ``n``
    symbols that running instances still own.
    """
    if engine.dialect.name != "postgresql":
        yield None
        return
    classes = LockClasses.of(service)
    dedicated = _dedicated_engine(engine, Timeouts(), "mds backfill")
    try:
        with dedicated.connect() as connection:
            keys = sorted({symbol_key(s) for s in symbols})
            for key in keys:
                connection.execute(_LOCK, {"cls": classes.backfill, "key": key})
            busy = [
                key
                for key in keys
                if not connection.execute(
                    _TRY_LOCK, {"cls": classes.symbols, "key": key}
                ).scalar_one()
            ]
            if busy and on_wait is not None:
                on_wait(len(busy))
            for key in busy:
                connection.execute(_LOCK, {"cls": classes.symbols, "key": key})
            yield connection
    finally:
        dedicated.dispose()  # closing the session releases every lock it took


def lock_holders(connection: Connection, service: str) -> dict[str, Any]:
    """Live instances and symbol locks of ``service``, as ``pg_locks`` shows them (for
    tests and diagnostics): ``{"instances": n, "symbol_keys": {key: pid}}``."""
    classes = LockClasses.of(service)
    rows = connection.execute(_LOCKS_SQL, classes.params()).all()
    return {
        "instances": len({pid for cls, _, pid in rows if cls == classes.members}),
        "symbol_keys": {key: pid for cls, key, pid in rows if cls == classes.symbols},
    }


__all__ = [
    "Claim",
    "LockClasses",
    "SymbolOwnership",
    "lock_holders",
    "symbol_key",
    "symbols_for_backfill",
]
