"""The Instance lifecycle as one transition table, shared by runner and host.

Both ends track the same state from the lifecycle messages that cross the
connection (whoever sent them). Messages that cross in flight (the host sends
STOP while the runner sends SEQUENCE_COMPLETED) are tolerated as no-ops; a
message that no ordering can explain is a protocol error. Time enters only as
the ``now`` argument (seconds, any monotonic clock).
"""

from __future__ import annotations

import enum
from typing import Any

from .constants import Code, ExitCode
from .errors import ProtocolError


class State(str, enum.Enum):
    STARTING = "starting"  # before the handshake completes
    RUNNING = "running"
    STOPPING = "stopping"  # STOP seen; deadline set unless keepalive was requested
    STOPPED = "stopped"  # SEQUENCE_STOPPED seen; waiting for KILL or exit
    COMPLETED = "completed"  # SEQUENCE_COMPLETED seen; runner exits soon
    KILLED = "killed"  # KILL seen; runner exits now
    ERRORED = "errored"  # the handshake was rejected or the Sequence failed
    EXITED = "exited"  # EXITING seen: nothing may follow


S = State
NO_OP = "same"  # the message is allowed and changes nothing
REFUSED = "error"  # the message is a protocol error in this state
_SAME, _ERR = NO_OP, REFUSED

# Lifecycle messages; every other message (MONITORING, PANG, EVENT, ...) leaves the
# state alone once the connection is open and is an error before it.
LIFECYCLE_CODES = (
    Code.PING,
    Code.PONG,
    Code.REJECT,
    Code.STOP,
    Code.ALIVE,
    Code.SEQUENCE_STOPPED,
    Code.SEQUENCE_COMPLETED,
    Code.KILL,
    Code.ERROR,
    Code.EXITING,
)

#: TABLE[state][code] -> next state, _SAME (no-op) or _ERR. EXITING maps to the
#: state its exit code means and then to EXITED (see Lifecycle.handle).
TABLE: dict[State, dict[int, Any]] = {
    S.STARTING: {
        Code.PING: _SAME, Code.PONG: S.RUNNING, Code.REJECT: S.ERRORED, Code.STOP: _ERR,
        Code.ALIVE: _ERR, Code.SEQUENCE_STOPPED: _ERR, Code.SEQUENCE_COMPLETED: _ERR,
        Code.KILL: _ERR, Code.ERROR: _ERR, Code.EXITING: S.EXITED,
    },
    S.RUNNING: {
        Code.PING: _ERR, Code.PONG: _ERR, Code.REJECT: _ERR, Code.STOP: S.STOPPING,
        Code.ALIVE: _SAME, Code.SEQUENCE_STOPPED: S.STOPPED, Code.SEQUENCE_COMPLETED: S.COMPLETED,
        Code.KILL: S.KILLED, Code.ERROR: S.ERRORED, Code.EXITING: S.EXITED,
    },
    S.STOPPING: {
        Code.PING: _ERR, Code.PONG: _ERR, Code.REJECT: _ERR, Code.STOP: S.STOPPING,
        Code.ALIVE: S.STOPPING, Code.SEQUENCE_STOPPED: S.STOPPED, Code.SEQUENCE_COMPLETED: S.COMPLETED,
        Code.KILL: S.KILLED, Code.ERROR: S.ERRORED, Code.EXITING: S.EXITED,
    },
    S.STOPPED: {
        Code.PING: _ERR, Code.PONG: _ERR, Code.REJECT: _ERR, Code.STOP: _SAME,
        Code.ALIVE: _ERR, Code.SEQUENCE_STOPPED: _ERR, Code.SEQUENCE_COMPLETED: _ERR,
        Code.KILL: S.KILLED, Code.ERROR: S.ERRORED, Code.EXITING: S.EXITED,
    },
    S.COMPLETED: {
        Code.PING: _ERR, Code.PONG: _ERR, Code.REJECT: _ERR, Code.STOP: _SAME,
        Code.ALIVE: _ERR, Code.SEQUENCE_STOPPED: _ERR, Code.SEQUENCE_COMPLETED: _ERR,
        Code.KILL: S.KILLED, Code.ERROR: S.ERRORED, Code.EXITING: S.EXITED,
    },
    S.KILLED: {
        Code.PING: _ERR, Code.PONG: _ERR, Code.REJECT: _ERR, Code.STOP: _SAME,
        Code.ALIVE: _SAME, Code.SEQUENCE_STOPPED: _SAME, Code.SEQUENCE_COMPLETED: _SAME,
        Code.KILL: _SAME, Code.ERROR: _SAME, Code.EXITING: S.EXITED,
    },
    S.ERRORED: {
        Code.PING: _ERR, Code.PONG: _ERR, Code.REJECT: _ERR, Code.STOP: _SAME,
        Code.ALIVE: _SAME, Code.SEQUENCE_STOPPED: _SAME, Code.SEQUENCE_COMPLETED: _SAME,
        Code.KILL: _SAME, Code.ERROR: _SAME, Code.EXITING: S.EXITED,
    },
    S.EXITED: {code: _ERR for code in LIFECYCLE_CODES},
}

#: Seconds a host waits for the runner to exit after SEQUENCE_STOPPED/COMPLETED
#: or KILL before escalating (STH's runnerExitDelay is 15 s).
DEFAULT_EXIT_GRACE = 15.0


class Deadline(str, enum.Enum):
    STOP = "stop"  # the stop timeout: the host sends KILL unless keepalive was requested
    EXIT = "exit"  # the runner should have exited by now


class Lifecycle:
    """Current state, keepalive flag, the exit code once known, and one pending deadline."""

    def __init__(self, exit_grace: float = DEFAULT_EXIT_GRACE) -> None:
        self.state = S.STARTING
        self.exit_grace = exit_grace
        self.keepalive = False
        self.stop_requested = False
        self.exit_code: int | None = None
        self.deadline: float | None = None
        self.deadline_kind: Deadline | None = None

    def effect(self, code: int) -> State | str:
        """What a lifecycle message would do now: the next state, NO_OP or REFUSED.

        Lets a sender skip a message that crossed with the peer's (e.g. ALIVE after
        KILL) instead of sending something that changes nothing or breaks protocol.
        """
        row = TABLE[self.state]
        if code not in row:
            return REFUSED if self.state in (S.STARTING, S.EXITED) else NO_OP
        target: State | str = row[code]
        return target

    def handle(self, code: int, body: dict[str, Any], now: float) -> State:
        """Apply a lifecycle message (sent or received); return the new state."""
        row = TABLE[self.state]
        if code not in row:
            if self.state in (S.STARTING, S.EXITED):
                raise ProtocolError(f"message {code} is not allowed while {self.state.value}")
            return self.state
        target = row[code]
        if target == _ERR:
            raise ProtocolError(f"message {_code_name(code)} is not allowed while {self.state.value}")
        if target == _SAME:
            return self.state
        self._enter(target, code, body, now)
        return self.state

    def _enter(self, target: State, code: int, body: dict[str, Any], now: float) -> None:
        if code == Code.STOP:
            self.stop_requested = True
            self.keepalive = False
            self._set_deadline(Deadline.STOP, now + max(0.0, float(body.get("timeout", 0))) / 1000.0)
        elif code == Code.ALIVE:
            self.keepalive = True
            self._set_deadline(None, None)
        elif code in (Code.SEQUENCE_STOPPED, Code.SEQUENCE_COMPLETED):
            # A pending stop deadline still decides when KILL goes out (the host
            # kills at the stop timeout, as STH does); else the exit grace runs.
            exit_at = now + self.exit_grace
            if not (self.deadline_kind == Deadline.STOP and self.deadline is not None and self.deadline <= exit_at):
                self._set_deadline(Deadline.EXIT, exit_at)
        elif code == Code.KILL:
            self._set_deadline(Deadline.EXIT, now + self.exit_grace)
        elif code == Code.EXITING:
            self.exit_code = int(body["exitCode"])
            self._set_deadline(None, None)
        elif code in (Code.ERROR, Code.REJECT):
            self._set_deadline(None, None)
        self.state = target

    def _set_deadline(self, kind: Deadline | None, when: float | None) -> None:
        self.deadline_kind = kind
        self.deadline = when

    def expire(self, now: float) -> Deadline | None:
        """Consume the deadline if it has passed; return which one it was."""
        if self.deadline is None or now < self.deadline:
            return None
        kind = self.deadline_kind
        self._set_deadline(None, None)
        return kind

    @property
    def final_exit_code(self) -> int | None:
        """The exit code the state implies when the runner exits without saying (None if unknown)."""
        if self.exit_code is not None:
            return self.exit_code
        if self.state == S.KILLED:
            return int(ExitCode.STOPPED if self.stop_requested else ExitCode.KILLED)
        return None


def _code_name(code: int) -> str:
    try:
        return f"{Code(code).name} ({code})"
    except ValueError:
        return str(code)
