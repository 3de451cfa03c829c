"""Where the durable stores live (one package per storage engine) and what
importing replaycore costs.

Each check runs in a fresh interpreter, so an import cycle or an eager import
of an engine's driver cannot hide behind modules an earlier test loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def fresh(code: str, backend: str | None = None) -> str:
    """Run ``code`` in a new interpreter (with ``REPLAYCORE_BACKEND=backend``
    when given); its stdout (fails on any error)."""
    env = dict(os.environ)
    env.pop("REPLAYCORE_BACKEND", None)
    if backend is not None:
        env["REPLAYCORE_BACKEND"] = backend
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
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


#: What ``import replaycore`` must not pay for: an engine's driver (loaded with
#: the durable store that needs it), asyncio (loaded by the async calls) and
#: importlib.metadata (``__version__`` is a constant). asyncio and
#: importlib.metadata alone were more than half of its start-up time.
NOT_AT_IMPORT = ("psycopg", "psycopg_pool", "sqlite3", "asyncio", "importlib.metadata")


@pytest.mark.parametrize("backend", ["rust", "python"])
def test_import_replaycore_never_imports_an_engine_driver_asyncio_or_metadata(backend):
    # What the interpreter loaded before replaycore does not count (a site
    # hook may load some of these): only what importing replaycore added.
    loaded = fresh(
        f"""
        import sys
        before = set(sys.modules)
        import replaycore, replaycore.cache, replaycore.outbox, replaycore.store
        import replaycore.ledger, replaycore.receipts
        from replaycore import ResultCache, IdempotencyStore
        from replaycore.outbox import MemoryOutbox, ScopedOutbox
        added = set(sys.modules) - before
        print(replaycore.BACKEND, sorted(m for m in {NOT_AT_IMPORT!r} if m in added))
        """,
        backend,
    )
    assert loaded == f"{backend} []"


def test_the_result_cache_loads_on_first_use():
    assert (
        fresh(
            """
            import sys
            import replaycore
            print("replaycore.cache" in sys.modules, end=" ")
            from replaycore import ResultCache, idempotent
            import replaycore.cache
            print(ResultCache is replaycore.cache.ResultCache, replaycore.Success.__module__)
            """
        )
        == "False True replaycore.cache"
    )


def test_the_async_calls_still_find_asyncio():
    # asyncio is imported where it is used: aexecute waiting on a lease,
    # areconcile polling a ledger.
    found = fresh(
        """
        import asyncio, tempfile
        from replaycore import InProgress, ResultCache, ledger

        async def main():
            cache = ResultCache(lease_s=0.05)
            started = asyncio.Event()

            async def slow():
                started.set()
                await asyncio.sleep(0.02)
                return "first"

            first = asyncio.create_task(cache.aexecute("k", slow))
            await started.wait()
            waited = await cache.aexecute("k", lambda: asyncio.sleep(0, "second"), wait=True)
            polled = await ledger.areconcile(tempfile.mkdtemp() + "/none.jsonl", 1, 30, 10)
            return (await first).value, waited.value, polled.found, polled.attempts > 1

        print(*asyncio.run(main()))
        """
    )
    assert found == "first first False True"


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
