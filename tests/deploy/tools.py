"""Locating the Debian tools the deploy tests run (installed by ``make test``)."""

from __future__ import annotations

import shutil

import pytest


def require(binary: str, package: str) -> str:
    """Path of ``binary``; fails (not skips) naming the Debian package when it is missing."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(
            f"{binary} not found on PATH: install the Debian package '{package}' "
            f"(apt-get install {package}), which provides {binary}"
        )
    return path


def promtool() -> str:
    return require("promtool", "prometheus")
