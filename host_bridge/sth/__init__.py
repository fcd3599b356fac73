"""Host side of Scramjet Transform Hub's runner protocol (nine TCP connections per instance).

Listens like STH's instance server and spawns runners like its process adapter,
so the project can test STH compatibility without Node. See docs/sth-compat.md.
"""

from runner.protocol.stop import DEFAULT_EXIT_GRACE

from .host import (
    EXIT_CODE_UNKNOWN,
    STHError,
    STHHost,
    STHInstance,
    STHInstanceGone,
    STHStartError,
)
from .spawn import DEFAULT_RUNNER_COMMAND, DEFAULT_STARTUP_LOG, runner_argv, runner_env, sequence_info_for

__all__ = [
    "DEFAULT_EXIT_GRACE",
    "DEFAULT_RUNNER_COMMAND",
    "DEFAULT_STARTUP_LOG",
    "EXIT_CODE_UNKNOWN",
    "STHError",
    "STHHost",
    "STHInstance",
    "STHInstanceGone",
    "STHStartError",
    "runner_argv",
    "runner_env",
    "sequence_info_for",
]
