"""Shared fixtures of the replaycore test suite.

* ``impl`` runs a behaviour test once per backend: the Rust core
  (``replaycore._core``, id ``rust``) and the pure-Python reference
  (``replaycore.reference``, id ``python``).
* The hypothesis profile ``replaycore`` is loaded for every test: no deadline
  (the first call of a backend may be slow), 200 examples by default, more
  with ``REPLAYCORE_HYPOTHESIS_EXAMPLES=<n>``.
* Before any test runs, the session checks that ``replaycore`` is the
  installed package (a wheel, or an editable install of this repository),
  not a bare source tree put on ``sys.path`` by hand, which would test stale
  or missing compiled code. ``REPLAYCORE_ALLOW_SOURCE=1`` turns the check off.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SOURCE_PACKAGE = REPO / "python" / "replaycore"

BACKENDS = {"rust": "replaycore._core", "python": "replaycore.reference"}

settings.register_profile(
    "replaycore",
    deadline=None,
    max_examples=int(os.environ.get("REPLAYCORE_HYPOTHESIS_EXAMPLES", "200")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("replaycore")


def _editable_install_of_repo() -> bool:
    """True when pip's metadata says replaycore is an editable install of REPO."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("replaycore")
    except PackageNotFoundError:
        return False
    raw = dist.read_text("direct_url.json")
    if not raw:
        return False
    info = json.loads(raw)
    if not info.get("dir_info", {}).get("editable", False):
        return False
    url = info.get("url", "")
    return url.startswith("file://") and Path(url[len("file://") :]).resolve() == REPO


def installed_package_problem() -> str | None:
    """Why the imported replaycore is not an installed package, or None when it is."""
    import replaycore

    location = Path(replaycore.__file__).resolve().parent
    if location != SOURCE_PACKAGE:
        return None
    if _editable_install_of_repo():
        return None
    return (
        f"replaycore was imported from the source tree {location} without being installed "
        "(pip install -e . or a wheel); set REPLAYCORE_ALLOW_SOURCE=1 to test it anyway"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("REPLAYCORE_ALLOW_SOURCE") == "1":
        return
    problem = installed_package_problem()
    if problem is not None:
        raise pytest.UsageError(problem)


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The backend module under test (``replaycore._core`` or ``replaycore.reference``)."""
    return importlib.import_module(BACKENDS[request.param])
