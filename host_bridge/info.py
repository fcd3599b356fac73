"""Plain data the Instance reports: info, health, and the exit code → status rule."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.protocol import ExitCode, Status, status_for_exit_code

from .stats import Health

__all__ = ["Health", "InstanceInfo", "Status", "exit_code_for_signal", "final_status"]


@dataclass
class InstanceInfo:
    """What is known about one Instance (STH's getInfo() plus the runner's own report).

    Times are timezone-aware UTC datetimes. ``provides``/``requires`` are the topics
    from the runner's PANG messages, with the content types of each side.
    """

    id: str
    sequence: str | None = None
    created: datetime | None = None
    started: datetime | None = None
    ended: datetime | None = None
    pid: int | None = None
    args: list[Any] | None = None
    app_config: dict[str, Any] | None = None
    provides: str | None = None
    requires: str | None = None
    input_content_type: str | None = None
    output_content_type: str | None = None
    output_encoding: str | None = None
    runner: dict[str, Any] = field(default_factory=dict)  # PING body without the token
    keepalive_ms: float | None = None  # set when the runner answered a STOP with ALIVE
    sequence_error: dict[str, Any] | None = None  # SEQUENCE_STOPPED's sequenceError
    runner_error: dict[str, Any] | None = None  # ERROR {message, stack, exitCode}
    reported_exit_code: int | None = None  # EXITING's exitCode
    exit_announced: bool = False  # EXITING came: the runner ended through its exit path (a clean end)
    exit_reason: str | None = None  # EXITING's reason
    exit_code: int | None = None
    exit_signal: int | None = None  # the signal that ended the process, if one did
    exit_signal_name: str | None = None  # its name ("SIGKILL")
    killed_by: str | None = None  # who sent that signal: "host", "oom-killer" or "outside" (sender unknown)
    oom: str | None = None  # the kernel counted an OOM kill while it ran: which counter, from what to what
    cgroup: str | None = None  # the cgroup holding the runner and its descendants (None: none could be made)
    descendants_killed: list[int] = field(default_factory=list)  # left behind by the runner, killed after it
    survivors: list[int] = field(default_factory=list)  # descendants still alive after SIGKILL (could not be ended)
    error: str | None = None  # why the Instance failed (host's view), None on success
    stderr_tail: list[str] = field(default_factory=list)  # last lines of the STDERR channel
    process_output_tail: list[str] = field(default_factory=list)  # last lines of the real fd 1/2 pipe


def exit_code_for_signal(sig: int, *, requested: bool, stop_requested: bool) -> int:
    """Exit code reported for a runner that died of ``sig``.

    A signal the host itself sent while killing (supervision) reports what the kill
    meant: 138 after a STOP, else 137. Any other signal death reports 128 + signal,
    the shell's convention: SIGKILL from outside (the OOM killer, ``kill -9``) is
    then 137 as STH's process adapter says, while a crash (SIGSEGV 139, SIGABRT 134)
    is an error rather than a "completed" Instance.
    """
    if requested:
        return int(ExitCode.STOPPED if stop_requested else ExitCode.KILLED)
    return 128 + sig


def final_status(exit_code: int | None, failed: bool) -> Status:
    if failed or exit_code is None:
        return Status.ERRORED
    return status_for_exit_code(exit_code)


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def describe_exit(exit_code: int | None, sig: int | None, requested: bool) -> str:
    if sig is not None:
        name = signal_name(sig)
        who = "by the host" if requested else "not sent by the host"
        return f"runner killed by {name} ({who}); exit code {exit_code}"
    return f"runner exited with code {exit_code}"
