"""Where the durable stores live (one package per storage engine) and what
importing replaycore costs.

Each check runs in a fresh interpreter, so an import cycle or an eager import
of an engine's driver cannot hide behind modules an earlier test loaded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def fresh(code: str) -> str:
    """Run ``code`` in a new interpreter; its stdout (fails on any error)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("module", "name", "home"),
    [
        ("replaycore.sqlite_store", "SqliteIdempotencyStore", "replaycore.sqlite.store"),
        ("replaycore.store", "SqliteIdempotencyStore", "replaycore.sqlite.store"),
        ("replaycore.store", "PostgresIdempotencyStore", "replaycore.postgres.store"),
        ("replaycore.cache", "SqliteResultCache", "replaycore.sqlite.cache"),
        ("replaycore.cache", "PostgresResultCache", "replaycore.postgres.cache"),
        ("replaycore.outbox", "SqliteOutbox", "replaycore.sqlite.outbox"),
        ("replaycore.outbox", "PostgresOutbox", "replaycore.postgres.outbox"),
        ("replaycore", "SqliteIdempotencyStore", "replaycore.sqlite.store"),
        ("replaycore", "SqliteResultCache", "replaycore.sqlite.cache"),
        ("replaycore.sqlite", "SqliteOutbox", "replaycore.sqlite.outbox"),
        ("replaycore.postgres", "PostgresOutbox", "replaycore.postgres.outbox"),
    ],
)
def test_every_store_is_importable_where_the_spec_places_it(module, name, home):
    # ``from module import name`` first, in a fresh interpreter: a cycle between
    # the concern module and its engine would fail right here.
    found = fresh(f"from {module} import {name}; print({name}.__module__)")
    assert found == home


def test_the_same_class_from_every_place():
    assert (
        fresh(
            """
            import replaycore, replaycore.outbox, replaycore.cache, replaycore.store
            import replaycore.sqlite, replaycore.postgres, replaycore.sqlite_store
            print(
                replaycore.outbox.SqliteOutbox is replaycore.sqlite.SqliteOutbox,
                replaycore.outbox.PostgresOutbox is replaycore.postgres.PostgresOutbox,
                replaycore.cache.SqliteResultCache is replaycore.SqliteResultCache,
                replaycore.store.SqliteIdempotencyStore
                is replaycore.sqlite_store.SqliteIdempotencyStore,
            )
            """
        )
        == "True True True True"
    )


def test_import_replaycore_never_imports_an_engine_driver():
    loaded = fresh(
        """
        import sys
        import replaycore, replaycore.cache, replaycore.outbox, replaycore.store
        from replaycore import ResultCache, IdempotencyStore
        from replaycore.outbox import MemoryOutbox, ScopedOutbox
        print(sorted(m for m in ("psycopg", "psycopg_pool", "sqlite3") if m in sys.modules))
        """
    )
    assert loaded == "[]"


def test_the_sqlite_engine_does_not_import_psycopg():
    loaded = fresh(
        """
        import sys
        from replaycore.outbox import SqliteOutbox
        from replaycore.cache import SqliteResultCache
        print("psycopg" in sys.modules, "sqlite3" in sys.modules)
        """
    )
    assert loaded == "False True"


def test_an_unknown_name_is_still_an_attribute_error():
    import replaycore
    import replaycore.cache
    import replaycore.outbox
    import replaycore.store

    for module in (replaycore, replaycore.cache, replaycore.outbox, replaycore.store):
        with pytest.raises(AttributeError, match="NoSuchStore"):
            module.NoSuchStore  # noqa: B018
