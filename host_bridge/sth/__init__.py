"""Starting a runner the way Scramjet Transform Hub's process adapter does (docs/sth-compat.md).

What ships here is what a hub that speaks STH's protocol itself may use: the
runner's environment and argv as STH builds them (``runner_env``,
``runner_argv``, ``sequence_info_for``). The STH-protocol *host* (``STHHost``,
``STHInstance`` and their errors) is a test and benchmark tool: it moved to the
test-support package ``sth_host`` (tests/sth_host/ in a checkout). Importing it
from here still works from a checkout, with a DeprecationWarning; the alias goes
in a later release.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

from runner.protocol.stop import DEFAULT_EXIT_GRACE

from .spawn import DEFAULT_RUNNER_COMMAND, DEFAULT_STARTUP_LOG, runner_argv, runner_env, sequence_info_for

#: Exit code STH's process adapter reports when the runner vanished without an exit-code file.
EXIT_CODE_UNKNOWN = 213

#: Names that moved to the test-support package ``sth_host``.
MOVED = frozenset({"STHError", "STHHost", "STHInstance", "STHInstanceGone", "STHStartError"})

__all__ = [
    "DEFAULT_EXIT_GRACE",
    "DEFAULT_RUNNER_COMMAND",
    "DEFAULT_STARTUP_LOG",
    "EXIT_CODE_UNKNOWN",
    "runner_argv",
    "runner_env",
    "sequence_info_for",
]


def __getattr__(name: str) -> Any:
    if name not in MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"host_bridge.sth.{name} moved to the test-support package sth_host (tests/sth_host/ in a checkout): "
        "host_bridge.sth keeps only the spawn helpers; this alias goes in a later release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_test_host(), name)


def _test_host() -> Any:
    try:
        return importlib.import_module("sth_host")
    except ImportError:
        tests = Path(__file__).resolve().parents[2] / "tests"
        if not (tests / "sth_host").is_dir():
            raise ImportError(
                "the STH test host (sth_host) is not shipped with host_bridge: use a checkout of sequence-runner"
            ) from None
        sys.path.append(str(tests))
        return importlib.import_module("sth_host")
