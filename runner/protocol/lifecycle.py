"""The Instance lifecycle as one transition table, shared by runner and host.

Both ends track the same state from the lifecycle messages that cross the
connection (whoever sent them). Messages that cross in flight (the host sends
STOP while the runner sends SEQUENCE_COMPLETED) are no-ops; a message that no
ordering can explain is a protocol error. The table is keyed by message class;
``can_send`` answers for a sender whether a message would change anything, so
nobody outside reads the table. Time enters only as the ``now`` argument
(seconds, any monotonic clock).
"""

from __future__ import annotations

import enum

from .constants import Code, ExitCode
from .errors import ProtocolError, RemoteProtocolError
from .events import (
    Alive,
    Deadline,
    Error,
    Exiting,
    Kill,
    Message,
    Ping,
    Pong,
    Reject,
    SequenceCompleted,
    SequenceStopped,
    Stop,
)
from .stop import DEFAULT_EXIT_GRACE


class State(str, enum.Enum):
    STARTING = "starting"  # before the handshake completes
    RUNNING = "running"
    STOPPING = "stopping"  # STOP seen; deadline set unless keepalive was requested
    STOPPED = "stopped"  # SEQUENCE_STOPPED seen; waiting for KILL or exit
    COMPLETED = "completed"  # SEQUENCE_COMPLETED seen; runner exits soon
    KILLED = "killed"  # KILL seen; runner exits now
    ERRORED = "errored"  # the handshake was rejected or the Sequence failed
    EXITED = "exited"  # EXITING seen: nothing may follow


class NoOp:
    """Table value (the class itself): the message is allowed and changes nothing."""


class Refused:
    """Table value (the class itself): the message is a protocol error in this state."""


Target = State | type[NoOp] | type[Refused]
S = State
_SAME, _ERR = NoOp, Refused

#: The messages that move the lifecycle; every other message (Monitoring, Pang, Event, ...)
#: leaves the state alone once the connection is open and is an error before it.
LIFECYCLE_MESSAGES: frozenset[type[Message]] = frozenset(
    {Ping, Pong, Reject, Stop, Alive, SequenceStopped, SequenceCompleted, Kill, Error, Exiting}
)

#: TRANSITIONS[state][message class] -> next state, NoOp or Refused. Exiting moves to EXITED
#: from every state but EXITED; the exit code it carries is kept (Lifecycle.exit_code).
TRANSITIONS: dict[State, dict[type[Message], Target]] = {
    S.STARTING: {
        Ping: _SAME, Pong: S.RUNNING, Reject: S.ERRORED, Stop: _ERR, Alive: _ERR, SequenceStopped: _ERR,
        SequenceCompleted: _ERR, Kill: _ERR, Error: _ERR, Exiting: S.EXITED,
    },
    S.RUNNING: {
        Ping: _ERR, Pong: _ERR, Reject: _ERR, Stop: S.STOPPING, Alive: _SAME, SequenceStopped: S.STOPPED,
        SequenceCompleted: S.COMPLETED, Kill: S.KILLED, Error: S.ERRORED, Exiting: S.EXITED,
    },
    S.STOPPING: {
        Ping: _ERR, Pong: _ERR, Reject: _ERR, Stop: S.STOPPING, Alive: S.STOPPING, SequenceStopped: S.STOPPED,
        SequenceCompleted: S.COMPLETED, Kill: S.KILLED, Error: S.ERRORED, Exiting: S.EXITED,
    },
    S.STOPPED: {
        Ping: _ERR, Pong: _ERR, Reject: _ERR, Stop: _SAME, Alive: _ERR, SequenceStopped: _ERR,
        SequenceCompleted: _ERR, Kill: S.KILLED, Error: S.ERRORED, Exiting: S.EXITED,
    },
    S.COMPLETED: {
        Ping: _ERR, Pong: _ERR, Reject: _ERR, Stop: _SAME, Alive: _ERR, SequenceStopped: _ERR,
        SequenceCompleted: _ERR, Kill: S.KILLED, Error: S.ERRORED, Exiting: S.EXITED,
    },
    S.KILLED: {
        Ping: _ERR, Pong: _ERR, Reject: _ERR, Stop: _SAME, Alive: _SAME, SequenceStopped: _SAME,
        SequenceCompleted: _SAME, Kill: _SAME, Error: _SAME, Exiting: S.EXITED,
    },
    S.ERRORED: {
        Ping: _ERR, Pong: _ERR, Reject: _ERR, Stop: _SAME, Alive: _SAME, SequenceStopped: _SAME,
        SequenceCompleted: _SAME, Kill: _SAME, Error: _SAME, Exiting: S.EXITED,
    },
    S.EXITED: {cls: _ERR for cls in LIFECYCLE_MESSAGES},
}


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

    def target(self, cls: type[Message]) -> Target:
        """What a message of class ``cls`` would do now: the next state, NoOp or Refused."""
        row = TRANSITIONS[self.state]
        if cls in row:
            return row[cls]
        return Refused if self.state in (S.STARTING, S.EXITED) else NoOp

    def can_send(self, cls: type[Message]) -> bool:
        """Whether sending a ``cls`` message now is allowed and changes something.

        An ordinary message (Monitoring, Event, ...) may go whenever the connection is open. A
        lifecycle message that would be a no-op (ALIVE after KILL) or an error (ALIVE after
        SEQUENCE_STOPPED) crossed with the peer's: a sender skips it.
        """
        if cls in LIFECYCLE_MESSAGES:
            return isinstance(self.target(cls), State)
        return self.state not in (S.STARTING, S.EXITED)

    def apply(self, event: Message, now: float, error: type[ProtocolError] = RemoteProtocolError) -> State:
        """Apply a message sent or received; return the new state. ``error`` if the state refuses it."""
        target = self.target(type(event))
        if target is Refused:
            raise error(f"message {_name(type(event))} is not allowed while {self.state.value}")
        if isinstance(target, State):
            self._enter(target, event, now)
        return self.state

    def _enter(self, target: State, event: Message, now: float) -> None:
        match event:
            case Stop(timeout_ms=timeout_ms):
                self.stop_requested = True
                self.keepalive = False
                self._set_deadline(Deadline.STOP, now + max(0.0, float(timeout_ms)) / 1000.0)
            case Alive():
                self.keepalive = True
                self._set_deadline(None, None)
            case SequenceStopped() | SequenceCompleted():
                # A pending stop deadline still decides when KILL goes out (the host
                # kills at the stop timeout, as STH does); else the exit grace runs.
                exit_at = now + self.exit_grace
                if not (self.deadline_kind == Deadline.STOP and self.deadline is not None
                        and self.deadline <= exit_at):
                    self._set_deadline(Deadline.EXIT, exit_at)
            case Kill():
                self._set_deadline(Deadline.EXIT, now + self.exit_grace)
            case Exiting(exit_code=exit_code):
                self.exit_code = int(exit_code)
                self._set_deadline(None, None)
            case Error() | Reject():
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


def _name(cls: type[Message]) -> str:
    return f"{Code(cls.code).name} ({cls.code})"

