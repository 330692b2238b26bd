"""The tree is linted (ruff) and type-checked (mypy), as part of the test command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _tool(name: str) -> None:
    if shutil.which(name) is None and not _module(name):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (it is in the [test] extra)")
        pytest.skip(f"{name} is not installed")


def _module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_ruff() -> None:
    _tool("ruff")
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy() -> None:
    _tool("mypy")
    r = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
