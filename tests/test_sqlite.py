"""The SQLite groundwork every durable store shares (replaycore._sqlite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from replaycore._sqlite import Database, SqliteFile
from replaycore.errors import InvalidArgumentType, StoreUnavailable

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)"


def test_write_commits_and_rolls_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", SCHEMA)
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
    db = Database(tmp_path / "x.db", SCHEMA)

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
        SqliteFile(42, SCHEMA)  # type: ignore[arg-type]
    assert info.value.argument == "path"
    with SqliteFile(tmp_path / "y.db", SCHEMA) as store:
        assert store.path == tmp_path / "y.db"
    with pytest.raises(StoreUnavailable):
        store._db.connection()
    with pytest.raises(StoreUnavailable):
        SqliteFile(tmp_path, SCHEMA)  # a directory is no database
