"""The Instance handle: one runner, its channels, events, health and lifecycle.

The public methods (input, output, events, stop/kill, wait) live here; the
task that starts, connects and supervises the runner lives in supervisor.py
and drives the same object.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from datetime import datetime, timezone
from typing import Any

import anyio
import anyio.lowlevel

from runner.protocol import Channel, Code, Connection, LocalProtocolError, Role, Status
from runner.protocol.connection import (
    ConnectionClosed,
    CreditAvailable,
    Data,
    DeadlineExpired,
    EndOfStream,
    Event,
    Message,
)

from .channels import ByteChannel, EventHub, EventMessage, EventSubscription, keepable
from .content import TEXT, decode_items, log_records
from .errors import InstanceNotRunning
from .info import Health, InstanceInfo
from .inputs import InputSide
from .link import Link
from .options import InstanceOptions
from .process import TailBuffer

_CHANNEL_NAMES = {
    "stdout": Channel.STDOUT,
    "stderr": Channel.STDERR,
    "output": Channel.OUT,
    "log": Channel.LOG,
}


def _now_utc() -> datetime:
    return datetime.now(timezone.utc)


class Instance:
    """A handle on one runner process (spawned or connected in). Created by a Bridge."""

    def __init__(self, instance_id: str, token: str, options: InstanceOptions) -> None:
        self.id = instance_id
        self.token = token
        self.options = options
        self.status: Status = Status.INITIALIZING
        self.info = InstanceInfo(
            id=instance_id,
            sequence=options.sequence,
            created=_now_utc(),
            args=options.args,
            app_config=options.app_config,
        )
        self.conn = self._new_connection()
        self.link: Link | None = None
        self._channels = {int(ch): ByteChannel(int(ch), self._consumed) for ch in _CHANNEL_NAMES.values()}
        self._events = EventHub()
        self._input = InputSide(self._open_link, options.input_content_type, self._link_now)
        self.connected = anyio.Event()  # handshake accepted
        self.ready = anyio.Event()  # connected, or ended without connecting
        self.done = anyio.Event()
        self.closed = False  # no more writes possible
        self.stderr_tail = TailBuffer()
        self.heartbeat: dict[str, Any] | None = None
        self.heartbeat_at: float | None = None
        self.heartbeats = 0
        self.connected_at: float | None = None
        self.stop_requested = False
        self.kill_requested = False
        # set by the supervisor
        self.escalate_now: Callable[[bool], None] | None = None  # (SIGKILL now?) -> None
        self.stop_timer: Callable[[float], None] | None = None  # KILL after the stop timeout
        self._monitoring_rate: float | None = None  # None: the runner's default (1/s)

    def _new_connection(self) -> Connection:
        o = self.options
        return Connection(Role.HOST, max_frame_size=o.max_frame_size, window=o.window, exit_grace=o.exit_grace)

    def __repr__(self) -> str:
        return f"<Instance {self.id} {self.status.value} pid={self.info.pid}>"

    # -- state ----------------------------------------------------------------
    @property
    def exit_code(self) -> int | None:
        return self.info.exit_code

    @property
    def pid(self) -> int | None:
        return self.info.pid

    async def wait(self) -> int | None:
        """Wait until the runner has exited and was reaped; return the exit code (None if unknown)."""
        await self.done.wait()
        return self.info.exit_code

    async def wait_started(self) -> bool:
        """Wait for the handshake; True if the runner is connected, False if it ended before."""
        await self.ready.wait()
        return self.connected.is_set()

    def health(self) -> Health:
        """The latest heartbeat and whether the runner counts as healthy now."""
        now = anyio.current_time()
        timeout = self.options.heartbeat_timeout
        if self._monitoring_rate is not None and self._monitoring_rate > 0:
            timeout = max(timeout, 3.0 / self._monitoring_rate)  # slow heartbeats are not missing ones
        if self._monitoring_rate == 0:
            timeout = float("inf")  # the host turned heartbeats off
        if self.heartbeat_at is None:
            age = None
            stale = self.connected_at is not None and now - self.connected_at > timeout
        else:
            age = now - self.heartbeat_at
            stale = age > timeout
        said_healthy = bool(self.heartbeat and self.heartbeat.get("healthy"))
        alive = not self.done.is_set()
        stats = dict(self.heartbeat.get("stats") or {}) if self.heartbeat else {}
        return Health(said_healthy and not stale and alive, stale and alive, stats, age, self.heartbeats)

    @property
    def healthy(self) -> bool:
        return self.health().healthy

    # -- input -----------------------------------------------------------------
    def _link_now(self) -> Link | None:
        """The open link, None before the handshake ended; InstanceNotRunning when there is none."""
        if not self.ready.is_set():
            return None
        if self.closed or self.link is None or not self.connected.is_set():
            raise InstanceNotRunning(f"instance {self.id} is {self.status.value} and has no open connection")
        return self.link

    async def _open(self) -> Link:
        link = self._link_now()
        if link is None:
            await self.ready.wait()
            link = self._link_now()
            assert link is not None
        return link

    async def _open_link(self) -> tuple[Connection, Link]:
        link = await self._open()
        return self.conn, link

    async def write_input(self, data: bytes | bytearray | memoryview | str, *, content_type: str | None = None) -> None:
        """Write bytes (str as UTF-8) to the Sequence's input, waiting for credit.

        ``content_type`` (or the bridge option ``input_content_type``) is sent as
        INPUT_CONTENT_TYPE before the first input byte; it cannot change afterwards.
        Without one the runner uses the Sequence's ``requires`` content type.
        """
        await self._input.write(Channel.IN, data, content_type)
        self._note_input_type()

    async def write_stdin(self, data: bytes | bytearray | memoryview | str) -> None:
        """Write to the Sequence's ``sys.stdin``."""
        await self._input.write(Channel.STDIN, data)

    async def set_input_content_type(self, content_type: str) -> None:
        await self._input.write(Channel.IN, b"", content_type)
        self._note_input_type()

    async def send_input(
        self,
        source: bytes | str | Iterable[Any] | AsyncIterable[Any],
        *,
        content_type: str | None = None,
        end: bool = True,
    ) -> None:
        """Send a whole input: bytes/str, or items (str lines, bytes, or JSON values for ndjson).

        Items are encoded for the content type (named here or in the options, else
        the Sequence's declared one, else text) and written in batches; the input is
        ended afterwards unless ``end=False``.
        """
        declared = self.info.input_content_type
        try:
            await self._input.send_all(source, content_type, declared, end)
        finally:
            self._note_input_type()

    def _note_input_type(self) -> None:
        if self._input.content_type_sent:
            self.info.input_content_type = self._input.content_type_sent

    async def end_input(self) -> None:
        """End the input stream (the Sequence's input iterator finishes)."""
        await self._input.end(Channel.IN)

    async def end_stdin(self) -> None:
        await self._input.end(Channel.STDIN)

    # -- output ------------------------------------------------------------------
    def _consumed(self, channel: int, n: int) -> None:
        if self.closed:
            return
        self.conn.consumed(channel, n)
        if self.link is not None:
            self.link.flush()

    def output(self) -> AsyncIterator[bytes]:
        """The Sequence's output as byte chunks (one reader per channel)."""
        return self._channels[Channel.OUT].__aiter__()

    def stdout(self) -> AsyncIterator[bytes]:
        return self._channels[Channel.STDOUT].__aiter__()

    def stderr(self) -> AsyncIterator[bytes]:
        return self._channels[Channel.STDERR].__aiter__()

    async def output_items(self, content_type: str | None = None) -> AsyncIterator[Any]:
        """Decoded output: JSON values (ndjson), str lines with their "\\n" (text), bytes chunks (octet-stream).

        The content type is the argument, else the one the runner declared (PANG), else
        text/plain. It is decided when the first chunk arrives (PANG comes before output).
        """
        channel = self._channels[Channel.OUT]
        first = await channel.receive()
        if first is None:
            return
        ctype = content_type or self.info.output_content_type or TEXT

        async def chunks() -> AsyncIterator[bytes]:
            yield first
            async for chunk in channel:
                yield chunk

        async for item in decode_items(chunks(), ctype):
            yield item

    def logs(self) -> AsyncIterator[dict[str, Any]]:
        """Log records (one dict per LOG line: ts, level, from, msg, exc)."""
        return log_records(self._channels[Channel.LOG].__aiter__())

    def discard(self, *channels: str) -> None:
        """Drop what arrives on these channels ("stdout", "stderr", "output", "log") unread,
        returning its credit at once: for channels nobody will read, so the runner never waits on them."""
        for name in channels:
            self._channels[_CHANNEL_NAMES[name]].discard()

    # -- events --------------------------------------------------------------------
    async def send_event(self, name: str, message: Any = None, *, source: str | None = None) -> None:
        """Send EVENT {eventName, message} to the Sequence (its context.on handlers)."""
        # One yield (and cancellation point) first, then one sendmsg: no hop through the writer task.
        if self._link_now() is not None:
            await anyio.lowlevel.checkpoint()  # then _open() does not wait (it re-checks the state)
        link = await self._open()
        body: dict[str, Any] = {"eventName": name}
        if message is not None:
            body["message"] = message
        if source is not None:
            body["source"] = source
        try:
            self.conn.send_message(Code.EVENT, body, anyio.current_time())
        except LocalProtocolError as exc:
            raise InstanceNotRunning(str(exc)) from exc
        link.flush()

    def events(self, name: str | None = None) -> EventSubscription:
        """Subscribe now to events from the Sequence (all, or those named ``name``); async-iterate it."""
        return self._events.subscribe(name)

    async def once(self, name: str) -> EventMessage:
        """The next event named ``name``; InstanceNotRunning if the connection ends first."""
        with self._events.subscribe(name) as subscription:
            event = await subscription.receive()
        if event is None:
            raise InstanceNotRunning(f"instance {self.id} ended before event {name!r}")
        return event

    def last_event(self, name: str) -> EventMessage | None:
        """The last event named ``name`` seen so far (None if none)."""
        return self._events.last.get(name)

    # -- lifecycle control ---------------------------------------------------------
    async def stop(self, timeout_ms: float | None = None, can_call_keepalive: bool = False) -> None:
        """Ask the Sequence to stop: STOP now, KILL after ``timeout_ms`` unless it asks for keepalive.

        ``timeout_ms`` defaults to the ``stop_timeout_ms`` option (7000, as STH).

        Returns once STOP is queued; ``wait()`` for the exit. Escalation continues by
        itself: KILL, then SIGTERM and SIGKILL after the exit and term graces.
        """
        if self.done.is_set():
            return
        if not self.connected.is_set() or self.closed:
            await self.kill()
            return
        if timeout_ms is None:
            timeout_ms = self.options.stop_timeout_ms
        self.stop_requested = True
        if self.status not in (Status.KILLING,):
            self.status = Status.STOPPING
        body = {"timeout": timeout_ms, "canCallKeepalive": can_call_keepalive}
        try:
            self.conn.send_message(Code.STOP, body, anyio.current_time())
        except LocalProtocolError:
            return  # the runner is already exiting
        self.info.keepalive_ms = None
        assert self.link is not None
        self.link.flush()
        if self.stop_timer is not None:
            self.stop_timer(timeout_ms / 1000.0)

    async def kill(self) -> None:
        """KILL the runner now; a second kill() (or a runner that does not exit) escalates to signals."""
        if self.done.is_set():
            return
        if self.kill_requested:
            self._escalate(immediate=True)
            return
        self.kill_requested = True
        self.status = Status.KILLING
        if self.connected.is_set() and not self.closed and self.link is not None:
            try:
                self.conn.send_message(Code.KILL, {}, anyio.current_time())
                self.link.flush()
                return
            except LocalProtocolError:
                pass  # the runner is exiting already; make sure it does
        self._escalate(immediate=False)

    def _escalate(self, immediate: bool) -> None:
        if self.escalate_now is not None:
            self.escalate_now(immediate)

    async def set_monitoring_rate(self, per_second: float) -> None:
        """Heartbeats per second (0 turns them off, and with them the staleness check)."""
        link = await self._open()
        self._monitoring_rate = float(per_second)
        self.conn.send_message(Code.MONITORING_RATE, {"monitoringRate": per_second}, anyio.current_time())
        link.flush()

    # -- events from the connection (called by the link's reader and timer) --------
    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Data):
                channel = self._channels.get(event.channel)
                if channel is not None:
                    if event.channel == Channel.STDERR:
                        data = bytes(event.payload)
                        self.stderr_tail.feed(data)
                        channel.feed(data)
                    elif channel.discarding:
                        channel.feed(event.payload)  # only counted, never kept
                    else:
                        channel.feed(keepable(event.payload))
            elif isinstance(event, Message):
                self._on_message(event.code, event.body)
            elif isinstance(event, CreditAvailable):
                self._input.credit_available(event.channel)
            elif isinstance(event, EndOfStream):
                channel = self._channels.get(event.channel)
                if channel is not None:
                    channel.end()
            elif isinstance(event, DeadlineExpired):
                # KILL was queued by the Connection if one was due; when none was (KILL
                # already sent and the exit grace passed), only signals are left.
                if self.conn.next_deadline() is None and event.kind.value == "exit":
                    self._escalate(immediate=False)
            elif isinstance(event, ConnectionClosed):
                pass

    def _on_message(self, code: int, body: dict[str, Any]) -> None:
        info = self.info
        if code == Code.MONITORING:
            self.heartbeat = body
            self.heartbeat_at = anyio.current_time()
            self.heartbeats += 1
        elif code == Code.EVENT:
            self._events.publish(EventMessage(body["eventName"], body.get("message"), body.get("source")))
        elif code == Code.PANG:
            if "provides" in body:
                info.provides = body["provides"]
                info.output_content_type = body.get("contentType") or info.output_content_type
                info.output_encoding = body.get("outputEncoding")
            if "requires" in body:
                info.requires = body["requires"]
                if not self._input.content_type_sent:
                    info.input_content_type = body.get("contentType") or info.input_content_type
        elif code == Code.ALIVE:
            info.keepalive_ms = float(body.get("keepAlive", 0))
        elif code == Code.SEQUENCE_STOPPED:
            info.sequence_error = body.get("sequenceError")
        elif code == Code.ERROR:
            info.runner_error = body
        elif code == Code.EXITING:
            info.reported_exit_code = int(body["exitCode"])
            info.exit_reason = body.get("reason")

    def _close_streams(self) -> None:
        """The connection is gone: readers drain what is buffered, writers fail."""
        self.closed = True
        for channel in self._channels.values():
            channel.end()
        self._input.close()
        self._events.close()

