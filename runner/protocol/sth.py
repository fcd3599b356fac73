"""Scramjet Transform Hub's runner protocol, sans-IO (standard library only).

Shared by the runner's STH transport and by ``host_bridge.sth``. STH connects a
runner to its host with nine TCP connections. Each opens with a preamble (the
36-byte instance id and one ASCII channel digit); CONTROL (host -> runner) and
MONITORING (runner -> host) carry JSON lines ``[code, {data}]``; IN starts with
an optional header block ``Content-Type: <type>\\r\\n\\r\\n``. Everything else
is raw bytes (the IN header block is in sth_input.py). See docs/sth-compat.md for how
this maps onto protocol v1.

Nothing here does I/O: bytes go in through ``feed()``, bytes to write come out
of the ``encode_*`` functions.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping

TYPE_CHECKING = False  # typing is not imported before the STH-mode PING (runner/hello.py)
if TYPE_CHECKING:
    from typing import Any

from .errors import LocalProtocolError
from .sth_input import (
    DEFAULT_MAX_HEADER_SIZE,
    BadHeaderBlock,
    HeaderBlockTooLarge,
    InputHeaderReader,
    STHProtocolError,
    encode_header_block,
    parse_header_block,
    show,
)

__all__ = [
    "CHANNEL_COUNT",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_MAX_LINE",
    "DEFAULT_PORT",
    "ENV_VARS",
    "EXIT_CODE_FILE_TEMPLATE",
    "HOST_TO_RUNNER_CODES",
    "INSTANCE_ID_LENGTH",
    "PREAMBLE_LENGTH",
    "RUNNER_TO_HOST_CODES",
    "BadHeaderBlock",
    "BadLine",
    "BadPreamble",
    "HeaderBlockTooLarge",
    "InputHeaderReader",
    "LineTooLong",
    "MessageDecoder",
    "PreambleReader",
    "STHChannel",
    "STHCode",
    "STHProtocolError",
    "encode_header_block",
    "encode_host_message",
    "encode_message",
    "encode_preamble",
    "encode_runner_message",
    "exit_code_file",
    "parse_header_block",
    "parse_preamble",
    "ping_data",
    "pong_data",
]

#: STH's instance server port (``host.instancesServerPort``).
DEFAULT_PORT = 8001
#: Instance ids are always 36-character strings (a UUID).
INSTANCE_ID_LENGTH = 36
#: Instance id plus one ASCII channel digit.
PREAMBLE_LENGTH = INSTANCE_ID_LENGTH + 1
CHANNEL_COUNT = 9
#: Longest CONTROL/MONITORING line a decoder accepts by default (they are small).
DEFAULT_MAX_LINE = 1 << 20
#: The process adapter polls this file for the runner's exit code.
EXIT_CODE_FILE_TEMPLATE = "/tmp/runner-{pid}"

#: Environment STH's adapters give the runner (``get-runner-env``).
ENV_VARS = (
    "SEQUENCE_PATH",
    "INSTANCES_SERVER_HOST",
    "INSTANCES_SERVER_PORT",
    "INSTANCE_ID",
    "SEQUENCE_INFO",
    "RUNNER_CONNECT_INFO",
)


class STHChannel(enum.IntEnum):
    """STH's ``CommunicationChannel``; 0-7 are runner.protocol.Channel's numbers."""

    STDIN = 0  # host -> runner, bytes
    STDOUT = 1  # runner -> host, bytes
    STDERR = 2  # runner -> host, bytes
    CONTROL = 3  # host -> runner, JSON lines ending "\n"
    MONITORING = 4  # runner -> host, JSON lines ending "\r\n"
    IN = 5  # host -> runner, optional header block, then bytes
    OUT = 6  # runner -> host, bytes
    LOG = 7  # runner -> host, JSON lines
    PACKAGE = 8  # both, BPMux tunnel to the host API (we keep it open, never use it)


class STHCode(enum.IntEnum):
    """STH's ``RunnerMessageCode`` (the subset runners and hosts exchange)."""

    PING = 3000
    MONITORING = 3001
    DESCRIBE_SEQUENCE = 3002
    ERROR = 3003
    ACKNOWLEDGE = 3004
    SEQUENCE_STOPPED = 3006
    STATUS = 3007
    ALIVE = 3010
    SEQUENCE_COMPLETED = 3011
    PANG = 3012
    INPUT_CONTENT_TYPE = 3013
    PONG = 4000
    STOP = 4001
    KILL = 4002
    MONITORING_RATE = 4003
    MONITORING_REPLY = 4004
    EVENT = 5001


#: Codes an STH host has a MONITORING handler for. Anything else crashes its
#: monitoring pipeline, so a runner must never send another code.
RUNNER_TO_HOST_CODES = frozenset(
    int(c)
    for c in (
        STHCode.PING,
        STHCode.MONITORING,
        STHCode.DESCRIBE_SEQUENCE,
        STHCode.ERROR,
        STHCode.ACKNOWLEDGE,
        STHCode.SEQUENCE_STOPPED,
        STHCode.STATUS,
        STHCode.ALIVE,
        STHCode.SEQUENCE_COMPLETED,
        STHCode.PANG,
        STHCode.EVENT,
    )
)
#: Codes a host may send on CONTROL (an STH runner's control table).
HOST_TO_RUNNER_CODES = frozenset(
    int(c)
    for c in (
        STHCode.PONG,
        STHCode.STOP,
        STHCode.KILL,
        STHCode.MONITORING_RATE,
        STHCode.MONITORING_REPLY,
        STHCode.EVENT,
        STHCode.INPUT_CONTENT_TYPE,
    )
)


class BadPreamble(STHProtocolError):
    """A connection did not start with a 36-byte instance id and a channel digit."""


class BadLine(STHProtocolError):
    """A CONTROL/MONITORING line that is not a JSON ``[int code, object]`` array."""

    def __init__(self, message: str, line: bytes, line_number: int, frames: list[Any] | None = None) -> None:
        super().__init__(message, frames)
        self.line = line
        self.line_number = line_number


class LineTooLong(STHProtocolError):
    """A CONTROL/MONITORING line longer than the decoder's limit."""


# -- preamble -------------------------------------------------------------------------------


def _check_instance_id(instance_id: str) -> bytes:
    try:
        raw = instance_id.encode("ascii")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"instance id {instance_id!r} is not ASCII") from None
    if len(raw) != INSTANCE_ID_LENGTH:
        raise LocalProtocolError(
            f"instance id {instance_id!r} has {len(raw)} characters; STH needs exactly {INSTANCE_ID_LENGTH}"
        )
    return raw


def encode_preamble(instance_id: str, channel: int) -> bytes:
    """The first bytes of a channel's connection: id + ASCII digit, to be sent in one write."""
    raw = _check_instance_id(instance_id)
    if not 0 <= channel < CHANNEL_COUNT:
        raise LocalProtocolError(f"channel {channel} is not an STH channel (0-{CHANNEL_COUNT - 1})")
    return raw + b"%d" % channel


def parse_preamble(data: bytes | bytearray | memoryview) -> tuple[str, STHChannel]:
    """Parse exactly ``PREAMBLE_LENGTH`` bytes into ``(instance_id, channel)``."""
    raw = bytes(data)
    if len(raw) != PREAMBLE_LENGTH:
        raise BadPreamble(f"preamble must be {PREAMBLE_LENGTH} bytes, got {len(raw)}: {raw[:64]!r}")
    id_bytes, digit = raw[:INSTANCE_ID_LENGTH], raw[INSTANCE_ID_LENGTH:]
    if not _printable_ascii(id_bytes):
        raise BadPreamble(f"instance id is not printable ASCII: {id_bytes!r}")
    if not (b"0" <= digit <= b"8"):
        raise BadPreamble(f"channel must be one ASCII digit 0-8 after the instance id, got {digit!r}")
    return id_bytes.decode("ascii"), STHChannel(digit[0] - 0x30)


def _printable_ascii(raw: bytes) -> bool:
    return all(0x21 <= b <= 0x7E for b in raw)


class PreambleReader:
    """Incremental preamble reader for a freshly accepted connection.

    ``feed`` returns None until the preamble is complete, then
    ``(instance_id, channel, rest)`` where ``rest`` is any bytes that followed.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[str, STHChannel, bytes] | None:
        if len(self._buf) >= PREAMBLE_LENGTH:
            raise LocalProtocolError("preamble already read")
        self._buf += data
        if len(self._buf) < PREAMBLE_LENGTH:
            return None
        instance_id, channel = parse_preamble(self._buf[:PREAMBLE_LENGTH])
        rest = bytes(self._buf[PREAMBLE_LENGTH:])
        return instance_id, channel, rest

    def eof(self) -> None:
        """The connection ended: an error unless the preamble was complete."""
        if len(self._buf) < PREAMBLE_LENGTH:
            raise BadPreamble(
                f"connection closed after {len(self._buf)} of {PREAMBLE_LENGTH} preamble bytes: {bytes(self._buf)!r}"
            )


# -- JSON lines (CONTROL, MONITORING) -------------------------------------------------------


class MessageDecoder:
    """Incremental decoder of ``[code, {data}]`` JSON lines.

    Splits on ``\\n``, strips one trailing ``\\r``, skips lines that are empty
    (or only whitespace). Holds at most ``max_line`` bytes of an unfinished line.
    Errors name the 1-based line number; messages decoded before the bad line in
    the same ``feed`` call are in ``err.frames``, and the decoder stays usable
    (the bad line is consumed), so a lenient receiver can log and go on.
    Codes are not checked here: the receiver decides what to do with codes it
    has no handler for (see ``RUNNER_TO_HOST_CODES``/``HOST_TO_RUNNER_CODES``).
    """

    __slots__ = ("_line_number", "_partial", "_pending", "max_line")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 2:
            raise ValueError("max_line must be at least 2")
        self.max_line = max_line
        self._partial = b""
        self._pending: list[bytes] = []  # complete lines left after an error
        self._line_number = 0

    @property
    def buffered(self) -> int:
        """Bytes held: an unfinished line plus complete lines not yet decoded."""
        return len(self._partial) + sum(len(line) + 1 for line in self._pending)

    def feed(self, data: bytes | bytearray | memoryview = b"") -> list[tuple[int, dict[str, Any]]]:
        """Decode the complete lines ``data`` finishes.

        After an error, the lines that followed the bad one in the same chunk
        are kept: call ``feed()`` (even with no data) to go on decoding them.
        """
        too_long: LineTooLong | None = None
        if data:
            chunk = bytes(data)
            if b"\n" not in chunk:
                partial = self._partial + chunk
                if len(partial) > self.max_line:
                    self._partial = b""
                    too_long = LineTooLong(
                        f"line {self._line_number + len(self._pending) + 1} is longer than {self.max_line} bytes"
                    )
                else:
                    self._partial = partial
                if not self._pending:
                    if too_long is not None:
                        raise too_long
                    return []
            else:
                lines = (self._partial + chunk).split(b"\n")
                tail = lines.pop()
                if len(tail) > self.max_line:
                    tail = b""
                    too_long = LineTooLong(
                        f"line {self._line_number + len(self._pending) + len(lines) + 1} is longer than "
                        f"{self.max_line} bytes"
                    )
                self._partial = tail
                if self._pending:
                    self._pending.extend(lines)
                else:
                    self._pending = lines
        out: list[tuple[int, dict[str, Any]]] = []
        pending = self._pending
        done = 0
        try:
            for line in pending:
                done += 1
                self._decode_line(line, out)
        except STHProtocolError as err:
            del pending[:done]
            err.frames = out
            raise
        pending.clear()
        if too_long is not None:
            too_long.frames = out
            raise too_long
        return out

    def eof(self) -> list[tuple[int, dict[str, Any]]]:
        """The stream ended: decode what is left, including a last line without newline."""
        if self._partial:
            self._pending.append(self._partial)
            self._partial = b""
        return self.feed()

    def _decode_line(self, line: bytes, out: list[tuple[int, dict[str, Any]]]) -> None:
        self._line_number += 1
        if len(line) > self.max_line:
            raise LineTooLong(f"line {self._line_number} has {len(line)} bytes; the limit is {self.max_line}")
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.isspace():
            return
        try:
            value = json.loads(line)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadLine(
                f"line {self._line_number} is not JSON ({err}): {show(line)}", line, self._line_number
            ) from None
        if (
            type(value) is not list
            or len(value) != 2
            or type(value[0]) is not int
            or type(value[1]) is not dict
        ):
            raise BadLine(
                f"line {self._line_number} is not a [int code, object] array: {show(line)}",
                line,
                self._line_number,
            )
        out.append((value[0], value[1]))


def encode_message(
    code: int, data: Mapping[str, Any], *, terminator: bytes, allowed: frozenset[int]
) -> bytes:
    if code not in allowed:
        raise LocalProtocolError(f"code {code} has no handler on the receiving side; refusing to send it")
    if not isinstance(data, Mapping):
        raise LocalProtocolError(f"message data must be a JSON object, got {type(data).__name__}")
    try:
        text = json.dumps([int(code), dict(data)], separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise LocalProtocolError(f"message {code} cannot be encoded as JSON: {err}") from err
    return text.encode("utf-8") + terminator


def encode_runner_message(code: int, data: Mapping[str, Any] | None = None) -> bytes:
    """Runner -> host (MONITORING): ``json + "\\r\\n"``; only codes the host handles."""
    return encode_message(
        code, {} if data is None else data, terminator=b"\r\n", allowed=RUNNER_TO_HOST_CODES
    )


def encode_host_message(code: int, data: Mapping[str, Any] | None = None) -> bytes:
    """Host -> runner (CONTROL): ``json + "\\n"``; only codes a runner handles."""
    return encode_message(code, {} if data is None else data, terminator=b"\n", allowed=HOST_TO_RUNNER_CODES)


# -- payload helpers --------------------------------------------------------------------------


def ping_data(
    instance_id: str,
    sequence_info: Mapping[str, Any],
    connect_info: Mapping[str, Any],
    pid: int,
    *,
    created_ms: int,
    status: str = "starting",
    input_headers_sent: bool = False,
) -> dict[str, Any]:
    """PING data as STH's Node runner sends it (``processPID`` is a string)."""
    return {
        "id": instance_id,
        "sequenceInfo": dict(sequence_info),
        "created": created_ms,
        "payload": {**connect_info, "system": {"processPID": str(pid)}},
        "status": status,
        "inputHeadersSent": input_headers_sent,
    }


def pong_data(app_config: Any = None, args: Any = None) -> dict[str, Any]:
    """PONG data: keys only when given (STH drops undefined keys)."""
    data: dict[str, Any] = {}
    if app_config is not None:
        data["appConfig"] = app_config
    if args is not None:
        data["args"] = args
    return data


def exit_code_file(pid: int) -> str:
    """``/tmp/runner-<pid>``: where the process adapter reads the exit code."""
    return EXIT_CODE_FILE_TEMPLATE.format(pid=pid)
