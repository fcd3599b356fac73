"""Protocol v1 <-> STH's runner protocol: what each message becomes on the other wire (sans-IO).

The runner core speaks protocol v1's message classes (``Stop``, ``Pang``, ...); STH's
wire carries JSON lines ``[code, {data}]`` on CONTROL and MONITORING and an optional
header block at the start of IN (sth.py, sth_input.py). ``STHTranslator`` holds every
rule of the mapping and the little state the rules need (docs/sth-compat.md §3, §4):

* CONTROL lines -> messages (``control``), lenient where STH is: bad lines and
  messages are skipped with a note, STOP's timeout defaults to STH's 7000 ms;
* messages -> MONITORING lines (``outgoing``): only codes an STH host handles,
  EXITING never (the exit code goes to a file), heartbeats without a verdict not
  at all, lifecycle messages that crossed with the host's refused (the one table,
  lifecycle.py), PANG each fact once;
* IN's header block -> ``InputContentType`` before the first input byte (``input``);
* the PING of a (re)connection with the Instance's status (``ping``).

No sockets, threads, clock or logging: time enters as ``now``, and what a lenient
receiver would log comes back as ``notes``. runner/transport/sth.py moves the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import codec
from .errors import LocalProtocolError, ProtocolError
from .events import (
    Error,
    Event,
    Exiting,
    InputContentType,
    Kill,
    Message,
    Monitoring,
    MonitoringRate,
    MonitoringReply,
    Pang,
    Ping,
    Pong,
    SequenceCompleted,
    SequenceStopped,
    Stop,
)
from .lifecycle import LIFECYCLE_MESSAGES, Lifecycle, State
from .sth import (
    RUNNER_TO_HOST_CODES,
    BadHeaderBlock,
    InputHeaderReader,
    MessageDecoder,
    STHCode,
    STHProtocolError,
    encode_runner_message,
    ping_data,
)
from .stop import DEFAULT_STOP_TIMEOUT_MS

__all__ = ["ACCEPTED", "FIRST_PANG", "REFUSED", "STHTranslator", "control_message", "monitoring_body"]

#: STH's first PANG (``first_pang``); runner/hello.py writes the same line before this module loads.
FIRST_PANG: Mapping[str, str] = {"requires": "", "contentType": ""}

#: ``outgoing`` results other than a line to write: the message needs nothing on STH's wire
#: (``Transport.send`` says True) or may not go (False).
ACCEPTED = True
REFUSED = False


def control_message(code: int, body: Mapping[str, Any], connect_info: Mapping[str, Any]) -> Message | None:
    """The message an STH CONTROL line stands for (None: none a runner handles); ValueError if bad.

    Lenient where STH is: STOP's timeout defaults to 7000 ms, unknown keys are ignored. PONG's
    ``appConfig``/``args`` fall back to the ones STH put in ``RUNNER_CONNECT_INFO``."""
    if code == STHCode.STOP:
        timeout = body.get("timeout", DEFAULT_STOP_TIMEOUT_MS)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError(f"STOP timeout {timeout!r} is not a number")
        return Stop(timeout_ms=float(timeout), can_keep_alive=bool(body.get("canCallKeepalive", False)))
    if code == STHCode.KILL:
        return Kill()
    if code == STHCode.MONITORING_RATE:
        rate = body.get("monitoringRate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
            raise ValueError(f"monitoringRate {rate!r} is not a number >= 0")
        return MonitoringRate(rate=float(rate))
    if code == STHCode.MONITORING_REPLY:
        return MonitoringReply()
    if code == STHCode.EVENT:
        name = body.get("eventName")
        if not isinstance(name, str):
            raise ValueError(f"EVENT without a string eventName: {dict(body)!r}")
        source = body.get("source")
        return Event(name=name, message=body.get("message"), source=source if isinstance(source, str) else None)
    if code == STHCode.PONG:
        return Pong(app_config=body.get("appConfig", connect_info.get("appConfig")),
                    args=body.get("args", connect_info.get("args")))
    return None


def monitoring_body(message: Message) -> dict[str, Any] | None:
    """The STH body of a runner message (PANG's before the each-fact-once rule); None: not sent."""
    match message:
        case Monitoring(healthy=healthy, stats=stats):
            if (stats or {}).get("starting"):
                return None  # no verdict yet: STH's /health waits for the first heartbeat instead
            return {"healthy": bool(healthy)}
        case SequenceStopped(error=error):
            return {} if error is None else {"sequenceError": error}
        case Error(message=text, stack=stack, exit_code=exit_code):
            exit_code = exit_code or 0
            return {"exitCode": exit_code, "message": text, "errorCode": exit_code, "stack": stack or ""}
        case Pang(provides=provides, output_encoding=encoding):
            data = codec.to_body(message)
            if provides is not None:
                data["outputEncoding"] = encoding  # STH's runners name it (null too) on the output side
            return data
        case Event(name=name, message=payload):
            return {"eventName": name} if payload is None else {"eventName": name, "message": payload}
    return codec.to_body(message)


class STHTranslator:
    """The mapping's state for one runner: lifecycle, status, PANGs sent, the IN header block.

    Not thread-safe: the transport calls it under its own lock (IN from the IN reader only)."""

    def __init__(self, instance_id: str, sequence_info: Mapping[str, Any], connect_info: Mapping[str, Any],
                 created_ms: int) -> None:
        self.instance_id = instance_id
        self.sequence_info = dict(sequence_info)
        self.connect_info = dict(connect_info)
        self.created_ms = created_ms
        self.lifecycle = Lifecycle()
        #: STH's status of the Instance, sent in a reconnect's PING (docs/sth-compat.md §3).
        self.status = "starting"
        #: The PANG bodies sent, in order: a reconnect sends them again.
        self.pangs: list[dict[str, Any]] = []
        #: A topic feeds IN (a ``requires`` PANG with a content type went out): no header block.
        self.input_from_topic = False
        self.headers_seen = False
        topic = self.connect_info.get("inputTopic")
        self._input_topic = topic if isinstance(topic, str) else ""
        self._control = MessageDecoder()
        self._in = InputHeaderReader(expect_headers=not topic)
        self._headers_sent_at_reconnect = False

    @property
    def handshake_done(self) -> bool:
        return self.lifecycle.state is not State.STARTING

    # -- (re)connecting ----------------------------------------------------------------------------
    def ping(self, hello: Ping, pid: int, now: float) -> bytes:
        """The first PING line (STH's fields, from the runner's hello; a reconnect's PING says
        ``created_ms``, when STH's environment was read)."""
        self.lifecycle.apply(hello, now)
        return encode_runner_message(STHCode.PING, ping_data(
            self.instance_id, self.sequence_info, self.connect_info, pid,
            created_ms=int(hello.created or self.created_ms),
            status="starting", input_headers_sent=False))

    def accept_pong(self, pong: Pong, now: float) -> None:
        self.lifecycle.apply(pong, now)

    def first_pang(self) -> bytes:
        """STH's first PANG, right after PONG and before the Sequence is loaded, as STH's own
        runners send it: the hub marks the Instance "running" at its first PANG and supervises
        its exit only from then on (ref §3.2), so a Sequence that fails to load still ends
        "errored". It says nothing of topics (no content type: nothing is routed); recorded as
        sent, so the Sequence's PANGs only add what it requires and provides."""
        data = dict(FIRST_PANG)
        line = encode_runner_message(STHCode.PANG, data)
        self._record_pang(data)
        return line

    def reconnect_ping(self, pid: int) -> bytes:
        """A reconnect's PING: the current status, and whether the host must skip the header block."""
        headers_sent = self.headers_seen or self.input_from_topic or self._in.done
        self._headers_sent_at_reconnect = headers_sent
        return encode_runner_message(STHCode.PING, ping_data(
            self.instance_id, self.sequence_info, self.connect_info, pid, created_ms=self.created_ms,
            status=self.status, input_headers_sent=headers_sent))

    def pang_lines(self) -> list[bytes]:
        """The PANGs sent so far, to go again first on a new connection."""
        return [encode_runner_message(STHCode.PANG, pang) for pang in self.pangs]

    def reconnected(self) -> None:
        """A new set of connections: a fresh CONTROL decoder; IN starts again (with a header block
        unless the reconnect's PING said it was sent)."""
        self._control = MessageDecoder()
        if self.headers_seen or not self._in.done:
            self._in = InputHeaderReader(expect_headers=not self._headers_sent_at_reconnect)

    # -- host -> runner ----------------------------------------------------------------------------
    def control(self, data: bytes | None) -> tuple[list[Message], list[str]]:
        """CONTROL bytes (None: CONTROL ended) -> the messages they complete, and notes on what
        was skipped (bad lines, bad messages, codes a runner has no handler for)."""
        messages: list[Message] = []
        notes: list[str] = []
        for code, body in self._control_lines(data, notes):
            try:
                message = control_message(code, body, self.connect_info)
            except ValueError as exc:
                notes.append(f"skipping CONTROL message {code}: {exc}")
                continue
            if message is None:
                notes.append(f"ignoring CONTROL code {code} (no handler in a runner)")
            else:
                messages.append(message)
        return messages, notes

    def _control_lines(self, data: bytes | None, notes: list[str]) -> list[tuple[int, dict[str, Any]]]:
        decoder = self._control
        lines: list[tuple[int, dict[str, Any]]] = []
        chunk = b"" if data is None else data
        while True:
            try:
                lines += decoder.eof() if data is None else decoder.feed(chunk)
                return lines
            except STHProtocolError as err:
                lines += err.frames
                notes.append(f"skipping a bad CONTROL line: {err}")
                chunk = b""

    def received(self, message: Message, now: float) -> str | None:
        """A host message is about to reach the core: its effect on status and lifecycle (a note
        when the lifecycle finds it out of order: it is delivered anyway, as STH's runners do)."""
        if isinstance(message, Stop):
            self.status = "stopping"
        elif isinstance(message, Kill):
            self.status = "killing"
        if type(message) in LIFECYCLE_MESSAGES:
            try:
                self.lifecycle.apply(message, now)
            except ProtocolError as err:
                return str(err)
        return None

    def input(self, data: bytes) -> tuple[list[InputContentType | bytes], str | None]:
        """IN bytes -> the content type once the header block is complete, then input bytes; and
        a note when the header block is bad (the input is then taken as it is)."""
        reader = self._in
        was_done = reader.done
        note = None
        try:
            payload: Any = reader.feed(data)
        except BadHeaderBlock as err:
            note = f"bad IN header block ({err}); taking the input as it is"
            reader = self._in = InputHeaderReader(expect_headers=False)
            payload = data
        out: list[InputContentType | bytes] = []
        if not was_done and reader.done:
            self.headers_seen = True
            if reader.content_type:
                out.append(InputContentType(content_type=reader.content_type))
        if payload:
            out.append(bytes(payload))
        return out, note

    def input_ended(self) -> str | None:
        """IN ended: a note if it ended inside the header block."""
        try:
            self._in.eof()
        except BadHeaderBlock as err:
            return str(err)
        return None

    # -- runner -> host ----------------------------------------------------------------------------
    def outgoing(self, message: Message, now: float) -> bytes | bool:
        """The MONITORING line for ``message``, with its effect on lifecycle and status recorded;
        ACCEPTED when STH needs nothing for it, REFUSED when it may not go (a code an STH host has
        no handler for, or a lifecycle message that crossed with the host's). LocalProtocolError
        when it cannot be encoded as JSON (nothing is recorded then)."""
        if isinstance(message, Exiting):
            return ACCEPTED  # STH has no EXITING: the exit code goes to /tmp/runner-<pid>
        code = message.code
        if code not in RUNNER_TO_HOST_CODES or isinstance(message, Ping):
            return REFUSED
        data = monitoring_body(message)
        if isinstance(message, Pang) and data is not None:
            data = self._pang(data)
        if data is None:
            return ACCEPTED  # a fact STH has no use for, or one it must not hear twice
        line = encode_runner_message(code, data)
        if not self._record_sent(message, data, now):
            return REFUSED
        return line

    def _pang(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Each fact once: STH's hub (re)routes the ``requires`` topic into the Instance on every PANG
        with a content type, so topic data would arrive twice (ref §10). A ``requires`` PANG goes
        out only until a topic with a content type was announced, and one naming no topic only as
        the first PANG (it makes the Instance "running"; after ``first_pang`` it says nothing new);
        a ``provides`` PANG only when it names a topic.

        --input-topic without a requires declaration: the topic is announced with a content type
        so STH routes it (STH-Py sent contentType "" and the topic never arrived)."""
        if "provides" in data:
            return data if data.get("provides") else None
        if self.pangs and self.input_from_topic:
            return None
        if not data.get("requires") and self._input_topic:
            data = {**data, "requires": self._input_topic, "contentType": data.get("contentType") or "text/plain"}
        if not data.get("requires") and self.pangs:
            return None
        return data

    def _record_sent(self, message: Message, data: dict[str, Any], now: float) -> bool:
        """The lifecycle and status a message sent now moves to (False: refused)."""
        if type(message) in LIFECYCLE_MESSAGES:
            if not self.lifecycle.can_send(type(message)):
                return False  # it crossed with the host's (SEQUENCE_COMPLETED after KILL)
            self.lifecycle.apply(message, now)
            if isinstance(message, SequenceCompleted):
                self.status = "completed"
            elif isinstance(message, Error):
                self.status = "errored"
        if isinstance(message, Pang):
            self._record_pang(data)
        return True

    def _record_pang(self, data: dict[str, Any]) -> None:
        self.pangs.append(data)
        if data.get("requires") and data.get("contentType"):
            self.input_from_topic = True
            if not self._in.done:
                try:
                    self._in.no_headers()
                except LocalProtocolError:
                    pass  # header bytes already came: the host sent a block after all
        if self.status == "starting":
            self.status = "running"
