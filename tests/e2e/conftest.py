"""Fixtures of the CLI end-to-end tests (helpers live in cli_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import REPO, Running


@pytest.fixture
def running():
    """Start background commands with ``running(args...)``; each is killed at the end of the test."""
    started: list[Running] = []

    def start(*args: str, cwd: Path | str = REPO) -> Running:
        r = Running(args, cwd)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()
