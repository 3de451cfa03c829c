"""The SQLite groundwork every durable store shares (replaycore.sqlite._engine)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from replaycore.errors import InvalidArgumentType, StoreUnavailable
from replaycore.sqlite._engine import Database, SqliteFile
from replaycore.sqlite.schema import MIGRATIONS

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)"


def test_write_commits_and_rolls_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", [SCHEMA])
    with db.write() as connection:
        connection.execute("INSERT INTO t VALUES ('a', 1)")

    def abort() -> None:
        with db.write() as connection:
            connection.execute("INSERT INTO t VALUES ('b', 2)")
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        abort()
    with db.read() as connection:
        assert connection.execute("SELECT k, v FROM t").fetchall() == [("a", 1)]
    db.close()


def test_sqlite_errors_become_store_unavailable_and_roll_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", [SCHEMA])

    def clash() -> None:
        with db.write() as connection:
            connection.execute("INSERT INTO t VALUES ('a', 1)")
            connection.execute("INSERT INTO t VALUES ('a', 2)")  # primary key clash

    with pytest.raises(StoreUnavailable) as info:
        clash()
    assert info.value.__cause__ is not None
    with pytest.raises(StoreUnavailable), db.read() as connection:
        connection.execute("SELECT nope FROM t")
    with db.read() as connection:
        assert connection.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
    db.close()
    with pytest.raises(StoreUnavailable):
        db.connection()


def test_sqlite_file_checks_the_path_and_closes_on_exit(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentType) as info:
        SqliteFile(42)  # type: ignore[arg-type]
    assert info.value.argument == "path"
    with SqliteFile(tmp_path / "y.db") as store:
        assert store.path == tmp_path / "y.db"
    with pytest.raises(StoreUnavailable):
        store._db.connection()
    with pytest.raises(StoreUnavailable):
        SqliteFile(tmp_path)  # a directory is no database


def test_migrations_run_once_in_order_and_set_user_version(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    steps = [SCHEMA, "ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 7"]
    db = Database(path, steps[:1])
    assert db.schema_version == 1
    with db.write() as connection:
        connection.execute("INSERT INTO t (k, v) VALUES ('a', 1)")
    db.close()
    db = Database(path, steps)  # a later release adds a migration
    assert db.schema_version == 2
    with db.read() as connection:
        assert connection.execute("SELECT k, v, w FROM t").fetchall() == [("a", 1, 7)]
    db.close()
    again = Database(path, steps)  # nothing left to apply: the ALTER does not run twice
    assert again.schema_version == 2
    again.close()


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreUnavailable, match="newer"):
        SqliteFile(path)


def test_stores_share_one_versioned_file(tmp_path: Path) -> None:
    with SqliteFile(tmp_path / "s.db") as store:
        assert store._db.schema_version == len(MIGRATIONS)


def test_a_failing_commit_is_store_unavailable_and_the_next_write_works(tmp_path: Path) -> None:
    db = Database(tmp_path / "c.db", [SCHEMA, "CREATE TABLE u (n INTEGER REFERENCES t (k))"])
    with db.write() as connection:
        connection.execute("PRAGMA foreign_keys = ON")  # outside a transaction this is a no-op
    connection = db.connection()
    connection.execute("PRAGMA foreign_keys = ON")

    def dangling() -> None:
        with db.write() as c:
            c.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT
            c.execute("INSERT INTO u VALUES ('nobody')")

    with pytest.raises(StoreUnavailable, match="commit") as info:
        dangling()
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert not connection.in_transaction
    with db.write() as c:
        c.execute("INSERT INTO t VALUES ('a', 1)")
    with db.read() as c:
        assert c.execute("SELECT COUNT(*) FROM u").fetchone() == (0,)
    db.close()


def test_a_failing_rollback_is_contained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(tmp_path / "r.db", [SCHEMA])
    broken = db.connection()

    class Fails(RuntimeError):
        pass

    def abort() -> None:
        with db.write() as c:
            c.execute("INSERT INTO t VALUES ('a', 1)")
            broken.close()  # the ROLLBACK that follows cannot run on a closed connection
            raise Fails

    with pytest.raises(Fails):  # the caller's error, not a raw sqlite3 error from ROLLBACK
        abort()
    with db.write() as c:  # a fresh connection replaced the broken one
        c.execute("INSERT INTO t VALUES ('b', 2)")
    with db.read() as c:
        assert c.execute("SELECT k FROM t").fetchall() == [("b",)]
    db.close()
