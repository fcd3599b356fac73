"""One runner connected over STH's protocol: the host side of its nine channels.

Behaviour follows STH's CSIController (reference §3.7): the first PANG makes the
Instance "running"; STOP is followed by KILL after its timeout unless ALIVE came;
SEQUENCE_STOPPED/SEQUENCE_COMPLETED/KILL start exit watchdogs (``exit_grace``); a
runner that does not exit is removed (SIGTERM, then SIGKILL: host_bridge's
``Escalation`` when the host spawned it).
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from host_bridge.escalation import Escalation
from runner.protocol import sth
from runner.protocol.constants import status_for_exit_code
from runner.protocol.sth import STHChannel, STHCode
from runner.protocol.stop import DEFAULT_STOP_TIMEOUT_MS

from .channels import READ_CHANNELS, RunnerChannel, Session

if TYPE_CHECKING:
    from .host import STHHost

log = logging.getLogger("sth_host")


class STHError(Exception):
    """Base class of the STH host's errors."""


class STHStartError(STHError):
    """The runner exited (or did not connect) before its PING."""

    def __init__(self, message: str, exit_code: int | None, crash_log: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.crash_log = crash_log


class STHInstanceGone(STHError):
    """The instance has exited, or its channels are not connected."""


class STHInstance:
    """One runner connected over STH's protocol; the host side of its nine channels."""

    def __init__(self, host: STHHost, instance_id: str, *, spawned: bool) -> None:
        self.host = host
        self.id = instance_id
        self.spawned = spawned
        self.status = "initializing" if spawned else "starting"
        self.ping: dict[str, Any] | None = None
        self.pings = 0
        self.pangs: list[dict[str, Any]] = []
        #: The code of every MONITORING message, in the order they came.
        self.received: list[int] = []
        #: How often STH's dispatcher would have routed the ``requires`` topic into IN (receive._on_pang).
        self.topic_routings = 0
        #: How often the host piped OUT into the ``provides`` topic (counted on an 0.18-style host,
        #: which does it on every PANG naming one: legacy.py).
        self.output_routings = 0
        self.pid: int | None = None
        self.created: float | None = None
        self.app_config: Any = None
        self.args: Any = None
        self.provides = ""
        self.requires = ""
        self.input_headers_sent = False
        self.input_from_topic = False
        self.keepalive_requested = False
        self.sequence_error: Any = None
        self.reports: dict[int, dict[str, Any]] = {}
        self.protocol_errors: list[Exception] = []
        self.heartbeats = 0
        #: Answer every heartbeat with MONITORING_REPLY, as STH does (False: a host that went silent).
        self.reply_to_heartbeats = True
        self.reconnects = -1
        self.exit_code: int | None = None
        self.exit_code_from_file: int | None = None
        self.crash_log = bytearray()
        self._process: anyio.abc.Process | None = None
        self._escalation: Escalation | None = None
        self._process_exited = anyio.Event()
        self._session: Session | None = None
        self._connected = anyio.Event()
        self._established = anyio.Event()
        self._running = anyio.Event()
        self._health_seen = anyio.Event()
        self._exited = anyio.Event()
        self._finished = False  # SEQUENCE_COMPLETED / SEQUENCE_STOPPED / KILL seen or sent
        self._finished_event = anyio.Event()
        self._last_health: dict[str, Any] | None = None
        self._last_events: dict[str, Any] = {}
        self._subscribers: dict[
            str, list[tuple[MemoryObjectSendStream[Any], MemoryObjectReceiveStream[Any]]]
        ] = {}
        self._channels = {int(ch): RunnerChannel(int(ch), host.buffer_bytes) for ch in READ_CHANNELS}
        self._held_eof: set[int] = set()
        self._poller_started = False

    # -- state ---------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    def __repr__(self) -> str:
        return f"<STHInstance {self.id} {self.status} pid={self.pid} exit={self.exit_code}>"

    async def wait_established(self) -> None:
        """Until the first PING was answered."""
        await self._established.wait()

    async def wait_running(self) -> None:
        """Until the first PANG."""
        await self._running.wait()

    async def wait(self) -> int:
        """Until the exit code is known; returns it."""
        await self._exited.wait()
        assert self.exit_code is not None
        return self.exit_code

    # -- input ----------------------------------------------------------------
    async def _connected_session(self) -> Session:
        if self.exited:
            raise STHInstanceGone(f"instance {self.id} has exited")
        await self._connected.wait()
        session = self._session
        if session is None:
            raise STHInstanceGone(f"instance {self.id} is not connected")
        return session

    async def _write(self, channel: int, data: bytes, session: Session | None = None) -> None:
        session = session or await self._connected_session()
        async with session.locks[channel]:
            try:
                await session.streams[channel].send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as err:
                raise STHInstanceGone(f"instance {self.id}: channel {channel} is closed ({err!r})") from err

    async def send_input(self, data: bytes, content_type: str = "text/plain") -> None:
        """Write to IN; the header block goes first, once, unless a topic feeds the input."""
        session = await self._connected_session()
        if session.input_ended:
            raise STHInstanceGone("input was already ended")
        async with session.locks[STHChannel.IN]:
            out = data
            if not self.input_headers_sent and not self.input_from_topic:
                out = sth.encode_header_block(content_type) + data
                self.input_headers_sent = True
            if out:
                try:
                    await session.streams[STHChannel.IN].send(out)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as err:
                    raise STHInstanceGone(f"instance {self.id}: IN is closed ({err!r})") from err

    async def end_input(self) -> None:
        """Half-close IN (TCP FIN): the Sequence's input ends."""
        session = await self._connected_session()
        if not session.input_ended:
            session.input_ended = True
            async with session.locks[STHChannel.IN]:
                await session.streams[STHChannel.IN].send_eof()

    async def send_stdin(self, data: bytes) -> None:
        await self._write(STHChannel.STDIN, data)

    async def end_stdin(self) -> None:
        session = await self._connected_session()
        if not session.stdin_ended:
            session.stdin_ended = True
            async with session.locks[STHChannel.STDIN]:
                await session.streams[STHChannel.STDIN].send_eof()

    # -- output -----------------------------------------------------------------
    def output(self) -> AsyncIterator[bytes]:
        """OUT bytes until the runner half-closes OUT (a reconnect does not end it).

        Each runner channel keeps at most ``STHHost.buffer_bytes`` unread; beyond that
        the host stops reading it and TCP pushes back on the runner. Consume the
        channels you care about; ``discard()`` the others.
        """
        return self._channels[STHChannel.OUT].__aiter__()

    def stdout(self) -> AsyncIterator[bytes]:
        return self._channels[STHChannel.STDOUT].__aiter__()

    def stderr(self) -> AsyncIterator[bytes]:
        return self._channels[STHChannel.STDERR].__aiter__()

    def log(self) -> AsyncIterator[bytes]:
        return self._channels[STHChannel.LOG].__aiter__()

    def discard(self, channel: int) -> None:
        """Drop everything the runner writes on ``channel`` (1, 2, 6 or 7) from now on."""
        self._channels[channel].discard()

    async def read_all(self, channel: int = STHChannel.OUT) -> bytes:
        return b"".join([chunk async for chunk in self._channels[channel]])

    # -- control ----------------------------------------------------------------
    async def send_control(self, code: int, data: Mapping[str, Any] | None = None) -> None:
        """Write one CONTROL message (only codes a runner handles)."""
        await self._write(STHChannel.CONTROL, sth.encode_host_message(code, data))

    async def send_event(self, event_name: str, message: Any = None, *, source: str = "api") -> None:
        data: dict[str, Any] = {"eventName": event_name, "source": source}
        if message is not None:
            data["message"] = message
        await self.send_control(STHCode.EVENT, data)

    async def set_monitoring_rate(self, rate: float) -> None:
        """Heartbeats per second (STH's ``_monitoring_rate``)."""
        if rate < 0:
            raise ValueError("monitoring rate must be >= 0")
        await self.send_control(STHCode.MONITORING_RATE, {"monitoringRate": rate})

    async def stop(self, timeout_ms: float = DEFAULT_STOP_TIMEOUT_MS, can_call_keepalive: bool = False) -> bool:
        """STOP, wait ``timeout_ms``, then KILL unless ALIVE came. Returns True if KILL was sent."""
        self.status = "stopping"
        self.keepalive_requested = False
        await self.send_control(STHCode.STOP, {"timeout": timeout_ms, "canCallKeepalive": can_call_keepalive})
        with anyio.move_on_after(timeout_ms / 1000):
            await self._exited.wait()
        if self.keepalive_requested or self.exited:
            return False
        self._finish()
        try:
            await self.send_control(STHCode.KILL, {})
        except STHInstanceGone:
            return False
        return True

    async def kill(self) -> None:
        """KILL; if the runner has not exited within the exit grace, remove it (signal)."""
        if self.exited:
            return
        if self.status == "killing":
            await self.remove()
            return
        self.status = "killing"
        self._finish()
        try:
            await self.send_control(STHCode.KILL, {})
        except STHInstanceGone:
            pass
        self.host.spawn_task(self.watchdog, "kill", False)

    async def remove(self) -> None:
        """Force the runner to end: SIGTERM then SIGKILL when we spawned it, else SIGKILL by PID."""
        if self.exited:
            return
        escalation = self._escalation
        if escalation is not None and not self._process_exited.is_set():
            escalation.terminate()  # SIGTERM to its group now, SIGKILL term_grace later
            with anyio.move_on_after(self.host.term_grace + 1.0):
                await self._process_exited.wait()
        elif self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass

    async def watchdog(self, why: str, kill_first: bool) -> None:
        """STH's exit watchdog: after ``exit_grace`` (KILL and another grace first, if asked), remove."""
        grace = self.host.exit_grace
        with anyio.move_on_after(grace):
            await self._exited.wait()
            return
        if kill_first:
            log.info("instance %s did not exit %ss after %s: KILL", self.id, grace, why)
            try:
                await self.send_control(STHCode.KILL, {})
            except STHInstanceGone:
                pass
            with anyio.move_on_after(grace):
                await self._exited.wait()
                return
        log.warning("instance %s did not exit after %s: removing it", self.id, why)
        await self.remove()

    def _finish(self) -> None:
        self._finished = True
        self._finished_event.set()

    # -- events --------------------------------------------------------------------
    def _subscribe(self, name: str) -> MemoryObjectReceiveStream[Any]:
        send, recv = anyio.create_memory_object_stream[Any](math.inf)
        self._subscribers.setdefault(name, []).append((send, recv))
        return recv

    def _unsubscribe(self, name: str, recv: MemoryObjectReceiveStream[Any]) -> None:
        recv.close()
        subs = self._subscribers.get(name, [])
        self._subscribers[name] = [(s, r) for s, r in subs if r is not recv]

    async def once(self, event_name: str) -> Any:
        """The next message of ``event_name`` the runner emits."""
        recv = self._subscribe(event_name)
        try:
            return await recv.receive()
        finally:
            self._unsubscribe(event_name, recv)

    async def last_event(self, event_name: str) -> Any:
        """The last message of ``event_name``, or the next one if none came yet."""
        if event_name in self._last_events:
            return self._last_events[event_name]
        return await self.once(event_name)

    async def events(self, event_name: str) -> AsyncIterator[Any]:
        """Every later message of ``event_name``, until the instance exits."""
        recv = self._subscribe(event_name)
        try:
            async for message in recv:
                yield message
        finally:
            self._unsubscribe(event_name, recv)

    def publish(self, name: str, message: Any) -> None:
        self._last_events[name] = message
        for send, _ in self._subscribers.get(name, []):
            try:
                send.send_nowait(message)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

    # -- health ----------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """The last heartbeat data plus ``processId`` (waits for the first heartbeat)."""
        await self._health_seen.wait()
        assert self._last_health is not None
        return dict(self._last_health)

    def heartbeat(self, data: dict[str, Any]) -> None:
        self.heartbeats += 1
        self._last_health = {**data, "processId": self.pid}
        self._health_seen.set()

    # -- the end ------------------------------------------------------------------------
    def set_exit(self, code: int) -> None:
        if self.exited:
            return
        self.exit_code = code
        self.status = status_for_exit_code(code).value
        self._exited.set()
        for ch in list(self._held_eof):
            self._channels[ch].end()
        self._held_eof.clear()
        if self._session is None:
            for channel in self._channels.values():
                channel.end()
        for subs in self._subscribers.values():
            for send, _ in subs:
                send.close()
