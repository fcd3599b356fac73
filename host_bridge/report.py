"""How an Instance ended, decided once from what supervision saw (no I/O here).

The exit code follows STH (docs/host_bridge.md "Exit code and status"): the
process's own code when it exited normally; for a death by signal, what the kill
meant when the host sent it (137, or 138 after a stop), else 128 + signal.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from datetime import datetime, timezone

from runner.protocol import Status

from .containment import Cleanup
from .external import RunnerExit
from .info import InstanceInfo, describe_exit, exit_code_for_signal, final_status, signal_name

_EXTERNAL_OOM = "out of memory: the runtime's memory limit killed the runner"


@dataclass(frozen=True)
class Ending:
    """What supervision observed about the end of one runner."""

    spawned: bool  # a process of ours (else a runner that connected in)
    returncode: int | None  # as the OS reported it (negative: killed by that signal); None: unknown
    signalled: bool  # the host sent the runner a signal while supervising it
    stop_requested: bool
    lifecycle_exit_code: int | None  # what the protocol lifecycle implies (EXITING, or 137/138 after KILL)
    connected: bool  # a handshake was accepted
    failure: str | None  # why the host considers it failed (protocol error, handshake, internal)
    connection_error: str | None  # the connection broke (not a protocol error)
    output_tail: list[str] = field(default_factory=list)  # last lines of the process's real fd 1/2
    host_signals: tuple[int, ...] = ()  # the signals the host sent the runner
    cleanup: Cleanup | None = None  # what ending its descendants found (spawned runners)
    external: RunnerExit | None = None  # how a launched runner ended, as its runtime saw it
    notes: tuple[str, ...] = ()  # problems talking to a launched runner's runtime (undelivered signals)


@dataclass(frozen=True)
class ExitReport:
    status: Status
    exit_code: int | None
    exit_signal: int | None
    error: str | None
    process_output_tail: list[str]
    ended: datetime
    killed_by: str | None = None
    cleanup: Cleanup | None = None
    oom: str | None = None  # a launched runner's runtime reported an OOM kill: its words

    def apply(self, info: InstanceInfo) -> None:
        info.exit_code = self.exit_code
        info.exit_signal = self.exit_signal
        info.exit_signal_name = signal_name(self.exit_signal) if self.exit_signal is not None else None
        info.killed_by = self.killed_by
        info.error = self.error
        info.process_output_tail = list(self.process_output_tail)
        info.ended = self.ended
        if self.oom is not None:
            info.oom = self.oom
        if self.cleanup is not None:
            info.oom = self.cleanup.oom
            info.descendants_killed = list(self.cleanup.killed)
            info.survivors = list(self.cleanup.survivors)


def _killed_by(ending: Ending, sig: int | None) -> str | None:
    """Who sent the fatal signal, as far as the host can know: Linux does not tell a parent the
    sender of a signal, so "outside" means "not the host, and the kernel counted no OOM kill"."""
    if sig is None:
        return None
    if ending.external is not None and ending.external.oom_killed:
        return "oom-killer"
    if sig in ending.host_signals:
        return "host"
    cleanup = ending.cleanup
    if sig == signal.SIGKILL and cleanup is not None and cleanup.oom_certain:
        return "oom-killer"
    return "outside"


def _exit_code(ending: Ending, info: InstanceInfo) -> tuple[int | None, int | None]:
    """(exit code, signal) of the runner."""
    if ending.external is not None and ending.external.exit_code is not None:
        return _external_exit_code(ending, ending.external.exit_code, info.exit_announced)
    if not ending.spawned:
        code = info.reported_exit_code if info.reported_exit_code is not None else ending.lifecycle_exit_code
        return code, None
    rc = ending.returncode
    if rc is None:
        return None, None
    if rc < 0:
        sig = -rc
        return exit_code_for_signal(sig, requested=ending.signalled, stop_requested=ending.stop_requested), sig
    return rc, None


def _external_exit_code(ending: Ending, code: int, announced: bool) -> tuple[int | None, int | None]:
    """A launched runner's code, as its runtime reports it (128 + signal for a signal death, as Docker
    does). The runner itself exits 137/138 after KILL/STOP, but then it said EXITING first: a code
    past 128 without EXITING is a death by that signal, the host's when it sent that signal."""
    if ending.external is not None and ending.external.oom_killed:
        return code, int(signal.SIGKILL)
    if code <= 128 or (announced and (code - 128) not in ending.host_signals):
        return code, None
    sig = code - 128
    if sig in ending.host_signals:
        return exit_code_for_signal(sig, requested=True, stop_requested=ending.stop_requested), sig
    return code, sig


def _unannounced_end(ending: Ending, info: InstanceInfo, code: int | None) -> str | None:
    """A runner that ends "successfully" without EXITING did not end through its exit path
    (``os._exit(0)``, a crash that exits 0): its output may be cut short, so it is no completion."""
    if not ending.connected or info.exit_announced:
        return None
    if not ending.spawned and code is None:
        return "the runner closed the connection without EXITING"
    if (ending.spawned or ending.external is not None) and code == 0:
        return "the runner exited with code 0 without EXITING: not a clean completion, its output may be incomplete"
    return None


def build_report(ending: Ending, info: InstanceInfo, stderr_tail: list[str]) -> ExitReport:
    code, sig = _exit_code(ending, info)
    failure = ending.failure or _unannounced_end(ending, info, code)
    status = final_status(code, failure is not None)
    error = None
    killed_by = _killed_by(ending, sig)
    unrequested_signal = sig is not None and not ending.signalled
    cleanup = ending.cleanup
    if status is Status.ERRORED or unrequested_signal or (cleanup is not None and cleanup.survivors):
        parts = [p for p in (failure, ending.connection_error, *ending.notes) if p]
        if (ending.spawned or ending.external is not None) and (code is not None or sig is not None):
            parts.append(describe_exit(code, sig, ending.signalled))
        external = ending.external
        if external is not None and (external.detail or external.oom_killed):
            parts.append(external.detail or _EXTERNAL_OOM)
        if cleanup is not None and (killed_by == "oom-killer" or (sig is not None and cleanup.oom)):
            parts.append(f"the kernel counted an OOM kill ({cleanup.oom})")
        if cleanup is not None and cleanup.survivors:
            parts.append(f"descendants that could not be ended: {cleanup.survivors}")
        if info.runner_error:
            parts.append(f"Sequence error: {info.runner_error.get('message')}")
        tail = ending.output_tail[-5:] or stderr_tail[-5:]
        if tail:
            parts.append("last output: " + " | ".join(tail))
        error = "; ".join(parts)
    oom = (ending.external.detail or _EXTERNAL_OOM) if ending.external is not None and ending.external.oom_killed else None
    return ExitReport(
        status, code, sig, error, list(ending.output_tail), datetime.now(timezone.utc), killed_by, cleanup, oom
    )


def internal_error_report(text: str) -> ExitReport:
    """The report when deciding the report itself failed (a bug): errored, nothing else known."""
    return ExitReport(Status.ERRORED, None, None, text, [], datetime.now(timezone.utc))
