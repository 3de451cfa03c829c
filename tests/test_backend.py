"""Backend selection, packaging and doctests of the facade."""

from __future__ import annotations

import doctest
import importlib
import importlib.resources
import json
import os
import pkgutil
import subprocess
import sys
import textwrap

import pytest
import replaycore
import replaycore.reference

SHARED_API = [
    "legacy_key",
    "key_from_intent",
    "parse_key",
    "derive_key",
    "legacy_keys",
    "derive_keys",
    "content_digest",
    "SequenceGenerator",
    "IdempotencyStore",
]

PROBE = textwrap.dedent(
    """
    import json, replaycore, replaycore.reference
    names = %r
    out = {"backend": replaycore.BACKEND,
           "reference": [getattr(replaycore, n) is getattr(replaycore.reference, n) for n in names]}
    if replaycore.BACKEND == "rust":
        import replaycore._core
        out["core"] = [getattr(replaycore, n) is getattr(replaycore._core, n) for n in names]
    print(json.dumps(out))
    """
) % (SHARED_API,)


def run_python(code: str, tmp_path, backend: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("REPLAYCORE_BACKEND", None)
    if backend is not None:
        env["REPLAYCORE_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def probe(tmp_path, backend: str | None) -> dict[str, object]:
    proc = run_python(PROBE, tmp_path, backend)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_python_backend_uses_the_reference(tmp_path):
    out = probe(tmp_path, "python")
    assert out["backend"] == "python"
    assert out["reference"] == [True] * len(SHARED_API)
    assert "core" not in out


@pytest.mark.parametrize("backend", [None, "", "rust"], ids=["unset", "empty", "rust"])
def test_default_backend_is_rust(tmp_path, backend):
    out = probe(tmp_path, backend)
    assert out["backend"] == "rust"
    assert out["core"] == [True] * len(SHARED_API)
    assert out["reference"] == [False] * len(SHARED_API)


def test_bogus_backend_fails_the_import(tmp_path):
    code = textwrap.dedent(
        """
        try:
            import replaycore
        except Exception as exc:
            cls = type(exc)
            print(cls.__module__, cls.__qualname__, exc.argument, exc.value)
        else:
            print("imported", replaycore.BACKEND)
        """
    )
    proc = run_python(code, tmp_path, "bogus")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "replaycore.errors",
        "InvalidArgument",
        "REPLAYCORE_BACKEND",
        "bogus",
    ]


def test_package_ships_typing_files():
    package = importlib.resources.files("replaycore")
    assert package.joinpath("py.typed").is_file()
    stub = package.joinpath("_core.pyi")
    assert stub.is_file()
    text = stub.read_text(encoding="utf-8")
    for name in SHARED_API:
        assert name in text


def test_all_names_exist():
    assert len(replaycore.__all__) == len(set(replaycore.__all__))
    for name in replaycore.__all__:
        assert hasattr(replaycore, name), name
    for name in SHARED_API:
        assert name in replaycore.__all__
        assert name in replaycore.reference.__all__
        assert hasattr(replaycore.reference, name)
    for name in replaycore.reference.__all__:
        assert hasattr(replaycore.reference, name), name
    assert replaycore.BACKEND in ("rust", "python")
    assert isinstance(replaycore.__version__, str)
    assert replaycore.__version__


def test_errors_importable_from_facade_and_module():
    from replaycore import errors

    for name in errors.__all__:
        assert getattr(replaycore, name) is getattr(errors, name)


def test_rust_core_has_the_shared_api():
    core = importlib.import_module("replaycore._core")
    for name in SHARED_API:
        assert callable(getattr(core, name)), name
    assert isinstance(core.__version__, str)
    assert core.__version__


def reference_modules() -> list[str]:
    found = ["replaycore.reference"]
    for info in pkgutil.walk_packages(replaycore.reference.__path__, "replaycore.reference."):
        found.append(info.name)
    return sorted(found)


DOCTESTED = [
    "replaycore",
    "replaycore.records",
    "replaycore.types",
    "replaycore.errors",
    *reference_modules(),
]

#: Modules whose docstrings must hold at least one example.
WITH_EXAMPLES = {
    "replaycore",
    "replaycore.records",
    "replaycore.types",
    "replaycore.reference",
    "replaycore.reference.keys",
    "replaycore.reference.sequence",
    "replaycore.reference.store",
}


def test_reference_modules_are_found():
    assert {"replaycore.reference.keys", "replaycore.reference.sequence"} <= set(DOCTESTED)
    assert "replaycore.reference.store" in DOCTESTED


@pytest.mark.parametrize("name", DOCTESTED)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, verbose=False, report=True)
    assert result.failed == 0
    if name in WITH_EXAMPLES:
        assert result.attempted > 0


def test_doctests_under_python_backend(tmp_path):
    code = textwrap.dedent(
        """
        import doctest, importlib, json
        results = {}
        for name in %r:
            r = doctest.testmod(importlib.import_module(name))
            results[name] = [r.failed, r.attempted]
        print(json.dumps(results))
        """
    ) % (DOCTESTED,)
    proc = run_python(code, tmp_path, "python")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    assert set(results) == set(DOCTESTED)
    for name, (failed, attempted) in results.items():
        assert failed == 0, (name, proc.stdout)
        if name in WITH_EXAMPLES:
            assert attempted > 0, name
