"""What the distribution says about itself: one version everywhere, the
licence, the changelog and the project's links."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import replaycore

ROOT = Path(__file__).resolve().parents[1]


def toml(name: str) -> dict[str, object]:
    return tomllib.loads((ROOT / name).read_text(encoding="utf-8"))


def test_one_version_everywhere():
    # maturin takes the distribution's version from the crate (dynamic =
    # ["version"]); __version__ is written out so that import needs no
    # importlib.metadata: it must say the same.
    crate = toml("Cargo.toml")["package"]["version"]
    assert "version" in toml("pyproject.toml")["project"]["dynamic"]
    assert replaycore.__version__ == crate
    assert importlib.metadata.version("replaycore") == crate


def test_the_rust_core_was_built_from_the_same_crate_version():
    core = pytest.importorskip("replaycore._core")
    assert core.__version__ == replaycore.__version__


def test_the_licence_is_mit_and_travels_with_the_distribution():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the replaycore developers\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    project = toml("pyproject.toml")["project"]
    # PEP 639: an SPDX expression, and the file the sdist and wheel carry
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project["classifiers"])
    assert toml("Cargo.toml")["package"]["license"] == "MIT"


def test_the_changelog_describes_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(replaycore.__version__)}\]", changelog, re.MULTILINE)


def test_the_project_links_and_keywords():
    project = toml("pyproject.toml")["project"]
    home = "https://github.com/replaycore/replaycore"
    assert project["urls"] == {
        "Homepage": home,
        "Repository": home,
        "Issues": f"{home}/issues",
        "Changelog": f"{home}/blob/main/CHANGELOG.md",
    }
    assert {"idempotency", "journal", "replay"} <= set(project["keywords"])
    assert "Typing :: Typed" in project["classifiers"]
    assert project["scripts"] == {"replaycore": "replaycore.cli:main"}
