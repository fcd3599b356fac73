"""Numbers of protocol v1: channels, message codes, roles and defaults.

Channel numbers and message codes follow Scramjet Transform Hub where the
meaning is the same, so the STH-compatible transport is a thin mapping.
New meanings get new numbers (documented in docs/protocol.md).
"""

from __future__ import annotations

import enum

PROTOCOL_VERSION = 1

#: Largest payload (bytes) of one DATA frame or one MESSAGE body, unless the
#: handshake agrees on another value. Bounds the memory a decoder may hold.
DEFAULT_MAX_FRAME_SIZE = 1 << 20
#: Smallest max frame size a peer may announce (a message must fit).
MIN_MAX_FRAME_SIZE = 1 << 12
#: Hard upper bound for announced max frame sizes (the length field is 32-bit,
#: but nobody needs frames this big and memory must stay bounded).
MAX_MAX_FRAME_SIZE = 1 << 26
#: Bytes a sender may have in flight on each flow-controlled channel before the
#: receiver grants more credit.
DEFAULT_WINDOW = 4 << 20


class Channel(enum.IntEnum):
    """Logical channels multiplexed on one connection (STH numbering 0-7)."""

    STDIN = 0  # host -> runner, bytes
    STDOUT = 1  # runner -> host, bytes
    STDERR = 2  # runner -> host, bytes
    CONTROL = 3  # host -> runner, messages
    MONITORING = 4  # runner -> host, messages
    IN = 5  # host -> runner, bytes (Sequence input)
    OUT = 6  # runner -> host, bytes (Sequence output)
    LOG = 7  # runner -> host, bytes (JSON lines)
    # 8 is STH's package/hub tunnel; reserved, not used by protocol v1.
    EVENTS = 9  # both directions, messages


#: Channels that carry raw bytes (DATA frames, flow-controlled, END-able).
DATA_CHANNELS = frozenset(
    {Channel.STDIN, Channel.STDOUT, Channel.STDERR, Channel.IN, Channel.OUT, Channel.LOG}
)
#: Channels that carry MESSAGE frames (never flow-controlled).
MESSAGE_CHANNELS = frozenset({Channel.CONTROL, Channel.MONITORING, Channel.EVENTS})
#: Data channels written by the host (runner reads them).
HOST_TO_RUNNER = frozenset({Channel.STDIN, Channel.IN})
#: Data channels written by the runner (host reads them).
RUNNER_TO_HOST = frozenset({Channel.STDOUT, Channel.STDERR, Channel.OUT, Channel.LOG})


class Code(enum.IntEnum):
    """Message codes (STH's RunnerMessageCode where the meaning is the same).

    Each code has one message class in events.py, which says who sends it and what
    its body holds; the codec and the role checks derive from that class.
    """

    # runner -> host, on MONITORING
    PING = 3000  # handshake hello of the runner
    MONITORING = 3001  # heartbeat
    ERROR = 3003  # the Sequence raised; details for the host
    SEQUENCE_STOPPED = 3006  # stop handled (or end()/destroy())
    ALIVE = 3010  # keepalive requested during a stop
    SEQUENCE_COMPLETED = 3011  # output finished; runner exits soon
    PANG = 3012  # topics / content types declared by the Sequence
    EXITING = 3020  # new: the runner's exit code, sent just before it exits
    # host -> runner, on CONTROL
    INPUT_CONTENT_TYPE = 3013  # content type of IN, sent before IN data
    PONG = 4000  # handshake reply of the host
    STOP = 4001
    KILL = 4002
    MONITORING_RATE = 4003
    MONITORING_REPLY = 4004
    REJECT = 4010  # new: handshake refused; the host closes after it
    # both directions, on EVENTS
    EVENT = 5001


class Role(str, enum.Enum):
    """The two ends of a connection."""

    RUNNER = "runner"
    HOST = "host"


class ExitCode(enum.IntEnum):
    """Runner exit codes (STH's RunnerExitCode)."""

    SUCCESS = 0
    INVALID_CONFIG = 20
    INVALID_SEQUENCE_PATH = 21
    FAILED_ON_START = 22
    FAILED_DURING_EXECUTION = 23
    KILLED = 137
    STOPPED = 138


#: Exit codes a hub reports as "completed"; every other code is "errored".
COMPLETED_EXIT_CODES = frozenset({ExitCode.SUCCESS, ExitCode.KILLED, ExitCode.STOPPED})


class Status(str, enum.Enum):
    """Instance statuses, with STH's names."""

    INITIALIZING = "initializing"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    KILLING = "killing"
    COMPLETED = "completed"
    ERRORED = "errored"


def status_for_exit_code(code: int) -> Status:
    """Map an exit code to the final status, as STH does (0/137/138 completed)."""
    return Status.COMPLETED if code in COMPLETED_EXIT_CODES else Status.ERRORED
