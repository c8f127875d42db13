"""Packaging: version, license and changelog agree with pyproject.toml."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import helion_ops

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = (REPO / "pyproject.toml").read_text()  # read with re: tomllib needs Python 3.11


def field(name: str) -> str:
    return re.search(rf'^{name} = "([^"]+)"', PYPROJECT, re.M).group(1)


def test_version_is_the_installed_metadata():
    try:
        installed = metadata.version("helion_ops")
    except metadata.PackageNotFoundError:
        installed = "0+unknown"
    assert helion_ops.__version__ == installed


def test_changelog_leads_with_the_project_version():
    first = re.search(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.M).group(1)
    assert first == field("version")


def test_license():
    assert field("license") == "BSD-3-Clause"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "helion_ops contributors" in text
