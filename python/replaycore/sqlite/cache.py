"""The result cache (SPEC section 5) in one SQLite file.

>>> import tempfile, pathlib
>>> with SqliteResultCache(pathlib.Path(tempfile.mkdtemp()) / "c.db") as cache:
...     cache.execute("k", lambda: [1, 2]), cache.execute("k", lambda: 0)
(Success(value=[1, 2]), Success(value=[1, 2]))
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import msgspec

from replaycore.cache import (
    DEFAULT_LEASE_S,
    CacheStats,
    _BaseCache,
    _check_callable,
    _Claim,
    _Fresh,
    _stats,
    _Stored,
)
from replaycore.sqlite._engine import SqliteFile

__all__ = ["SqliteResultCache"]

_COLUMNS = "intent_id, outcome, ttl_s, stored_at, expires_at, access_count"
_STORE = f"INSERT OR REPLACE INTO cache_results (key, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


def _row(row: tuple[Any, ...]) -> _Stored:
    return _Stored(row[0], bytes(row[1]), float(row[2]), float(row[3]), float(row[4]), int(row[5]))


class SqliteResultCache(_BaseCache, SqliteFile):
    """The result cache (SPEC section 5) in one SQLite file; thread- and process-safe.

    Same behaviour as :class:`~replaycore.cache.ResultCache`. Every operation
    that reads and writes (``get`` counting an access, the claim of a lease,
    storing an outcome) is one ``BEGIN IMMEDIATE`` transaction, so N processes
    racing ``execute`` on one key run ``fn`` exactly once. A lease is a row
    that lapses ``lease_s`` clock seconds after it was taken, so a caller that
    crashed inside ``fn`` blocks the key only until then. All processes
    sharing a file should use the same clock (``time.time`` by default).

    Values are stored as msgspec msgpack (see :mod:`replaycore.cache`).
    Database failures raise :class:`~replaycore.errors.StoreUnavailable`. Use
    it as a context manager, or call :meth:`close`.

    >>> import tempfile, pathlib
    >>> with SqliteResultCache(pathlib.Path(tempfile.mkdtemp()) / "c.db") as cache:
    ...     cache.execute("k", lambda: [1, 2]), cache.execute("k", lambda: 0)
    (Success(value=[1, 2]), Success(value=[1, 2]))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        _check_callable(clock, "clock")
        _BaseCache.__init__(self, clock, lease_s)
        SqliteFile.__init__(self, path)

    def __repr__(self) -> str:
        return f"SqliteResultCache({str(self._db.path)!r}, lease_s={self._lease_s})"

    def __len__(self) -> int:
        with self._db.read() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM cache_results").fetchone()
        return int(count)

    @staticmethod
    def _live(db: sqlite3.Connection, key: str, now: float) -> _Stored | None:
        """The live entry, access counted; an expired one is deleted."""
        row = db.execute(f"SELECT {_COLUMNS} FROM cache_results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        stored = _row(row)
        if now >= stored.expires_at:
            db.execute("DELETE FROM cache_results WHERE key = ?", (key,))
            return None
        stored.access_count += 1
        db.execute(
            "UPDATE cache_results SET access_count = ? WHERE key = ?",
            (stored.access_count, key),
        )
        return stored

    def _read(self, key: str, now: float | None) -> _Stored | None:
        assert now is not None  # a SQLite cache always has a clock
        with self._db.write() as db:
            return self._live(db, key, now)

    def _write(self, key: str, fresh: _Fresh, now: float | None) -> bool:
        assert now is not None
        with self._db.write() as db:
            new = db.execute("SELECT 1 FROM cache_results WHERE key = ?", (key,)).fetchone()
            db.execute(_STORE, (key, *msgspec.structs.astuple(fresh.stamped(now))))
        return new is None

    def _claim(self, key: str, token: str, now: float | None) -> _Claim:
        assert now is not None
        with self._db.write() as db:
            stored = self._live(db, key, now)
            if stored is not None:
                return _Claim(hit=stored)
            lease = db.execute(
                "SELECT expires_at FROM cache_leases WHERE key = ?", (key,)
            ).fetchone()
            if lease is not None and now < lease[0]:
                return _Claim(lease_expires_at=float(lease[0]))
            db.execute(
                "INSERT OR REPLACE INTO cache_leases (key, token, expires_at) VALUES (?, ?, ?)",
                (key, token, now + self._lease_s),
            )
            return _Claim(claimed=True)

    def _complete(self, key: str, token: str, fresh: _Fresh | None, now: float | None) -> None:
        assert now is not None
        with self._db.write() as db:
            if fresh is not None:
                prior = db.execute(
                    "SELECT expires_at FROM cache_results WHERE key = ?", (key,)
                ).fetchone()
                if prior is None or now >= prior[0]:
                    db.execute(_STORE, (key, *msgspec.structs.astuple(fresh.stamped(now))))
            db.execute("DELETE FROM cache_leases WHERE key = ? AND token = ?", (key, token))

    def cleanup_expired(self) -> int:
        """Remove every expired entry and lapsed lease; return how many entries."""
        now = self._now()
        with self._db.write() as db:
            removed = db.execute("DELETE FROM cache_results WHERE expires_at <= ?", (now,))
            count = removed.rowcount
            db.execute("DELETE FROM cache_leases WHERE expires_at <= ?", (now,))
        return int(count)

    def stats(self) -> CacheStats:
        """A :class:`CacheStats` snapshot (expired entries not yet removed count)."""
        now = self._now()
        with self._db.read() as db:
            total, expired, accesses, ttl_sum = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(expires_at <= ?), 0), "
                "COALESCE(SUM(access_count), 0), COALESCE(SUM(ttl_s), 0.0) FROM cache_results",
                (now,),
            ).fetchone()
        return _stats(int(total), int(expired), int(accesses), float(ttl_sum))
