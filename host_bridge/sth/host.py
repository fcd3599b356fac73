"""An STH-protocol host: listens like STH's instance server and drives runners over nine TCP connections.

Used by tests and benchmarks to check STH compatibility without Node. Behaviour
follows STH's CSIController/CommunicationHandler (reference §2-4): nothing is
processed until all nine channels of an instance are connected; PING is
answered with PONG; the first PANG makes the instance "running"; every
heartbeat gets MONITORING_REPLY; STOP is followed by KILL after its timeout
unless ALIVE came; SEQUENCE_STOPPED/SEQUENCE_COMPLETED/KILL start exit
watchdogs; a known instance id may reconnect.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from runner.protocol import sth
from runner.protocol.constants import status_for_exit_code
from runner.protocol.errors import LocalProtocolError
from runner.protocol.sth import STHChannel, STHCode
from runner.protocol.stop import DEFAULT_EXIT_GRACE, DEFAULT_STOP_TIMEOUT_MS

from .spawn import DEFAULT_RUNNER_COMMAND, DEFAULT_STARTUP_LOG, runner_argv, runner_env, sequence_info_for

log = logging.getLogger("host_bridge.sth")

#: Exit code the process adapter reports when the runner vanished without an exit-code file.
EXIT_CODE_UNKNOWN = 213
_READ_SIZE = 1 << 16
_CRASH_LOG_LIMIT = 64 << 10


class STHError(Exception):
    """Base class of host_bridge.sth errors."""


class STHStartError(STHError):
    """The runner exited (or did not connect) before its PING."""

    def __init__(self, message: str, exit_code: int | None, crash_log: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.crash_log = crash_log


class STHInstanceGone(STHError):
    """The instance has exited, or its channels are not connected."""


_READ_CHANNELS = (STHChannel.STDOUT, STHChannel.STDERR, STHChannel.OUT, STHChannel.LOG)
_DRAIN_CHANNELS = (STHChannel.STDIN, STHChannel.CONTROL, STHChannel.IN, STHChannel.PACKAGE)


@dataclass(eq=False)
class _Session:
    """One set of nine connections (a reconnect makes a new session)."""

    streams: dict[int, anyio.abc.SocketStream]
    readers: dict[int, BufferedByteReceiveStream]
    locks: dict[int, anyio.Lock] = field(default_factory=dict)
    monitoring_closed: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    input_ended: bool = False
    stdin_ended: bool = False


class _ByteChannel:
    """Bytes the runner wrote on one channel, for one consumer (bounded: TCP backpressure)."""

    def __init__(self, max_chunks: int) -> None:
        self._send: MemoryObjectSendStream[bytes]
        self._recv: MemoryObjectReceiveStream[bytes]
        self._send, self._recv = anyio.create_memory_object_stream[bytes](max_chunks)
        self.ended = False
        self.discarding = False

    async def put(self, data: bytes) -> None:
        if self.ended or self.discarding:
            return
        try:
            await self._send.send(data)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self._send.close()

    def discard(self) -> None:
        self.discarding = True
        self._recv.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._recv:
                yield chunk
        except anyio.ClosedResourceError:
            return


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
        self.pid: int | None = None
        self.created: float | None = None
        self.app_config: Any = None
        self.args: Any = None
        self.provides = ""
        self.requires = ""
        self.input_headers_sent = False
        self.input_from_topic = False
        self.keepalive_requested = False
        self.stop_expected = False
        self.sequence_error: Any = None
        self.reports: dict[int, dict[str, Any]] = {}
        self.protocol_errors: list[Exception] = []
        self.heartbeats = 0
        self.reconnects = -1
        self.exit_code: int | None = None
        self.exit_code_from_file: int | None = None
        self.crash_log = bytearray()
        self._process: anyio.abc.Process | None = None
        self._session: _Session | None = None
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
        self._channels = {int(ch): _ByteChannel(host.buffer_chunks) for ch in _READ_CHANNELS}
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
    async def _connected_session(self) -> _Session:
        if self.exited:
            raise STHInstanceGone(f"instance {self.id} has exited")
        await self._connected.wait()
        session = self._session
        if session is None:
            raise STHInstanceGone(f"instance {self.id} is not connected")
        return session

    async def _write(self, channel: int, data: bytes, session: _Session | None = None) -> None:
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

        Each runner channel buffers at most ``STHHost.buffer_chunks`` reads;
        beyond that the host stops reading it and TCP pushes back on the
        runner. Consume the channels you care about; ``discard()`` the others.
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
        self.host._spawn(self._watchdog, "kill", False)

    async def remove(self) -> None:
        """Force the runner to end: SIGTERM then SIGKILL when we spawned it, else SIGKILL by PID."""
        if self.exited:
            return
        proc = self._process
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with anyio.move_on_after(self.host.term_grace):
                await proc.wait()
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGKILL)
        elif self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass

    async def _watchdog(self, why: str, kill_first: bool) -> None:
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

    def _publish(self, name: str, message: Any) -> None:
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

    # -- session (called by the host) -----------------------------------------------------
    async def _run_session(self, session: _Session) -> None:
        old, self._session = self._session, session
        self.reconnects += 1
        if old is not None and old.scope is not None:
            old.scope.cancel()
        # a reconnect replaces the streams: data channels held open across it go on
        self._held_eof.clear()
        session.locks = {int(ch): anyio.Lock() for ch in STHChannel}
        self._connected.set()
        try:
            async with anyio.create_task_group() as tg:
                session.scope = tg.cancel_scope
                tg.start_soon(self._read_monitoring, session)
                for ch in _READ_CHANNELS:
                    tg.start_soon(self._read_data, session, int(ch))
                for ch in _DRAIN_CHANNELS:
                    tg.start_soon(self._drain, session, int(ch))
        finally:
            if self._session is session:
                self._session = None
                self._connected = anyio.Event()
            with anyio.CancelScope(shield=True):
                for stream in session.streams.values():
                    await stream.aclose()

    async def _drain(self, session: _Session, channel: int) -> None:
        """Channels the runner does not write on (it may half-close them; the package tunnel is ignored)."""
        reader = session.readers[channel]
        try:
            while True:
                await reader.receive(_READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return

    async def _read_data(self, session: _Session, channel: int) -> None:
        reader = session.readers[channel]
        target = self._channels[channel]
        try:
            while True:
                await target.put(await reader.receive(_READ_SIZE))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        await self._data_eof(session, channel)

    def _finish(self) -> None:
        self._finished = True
        self._finished_event.set()

    async def _data_eof(self, session: _Session, channel: int) -> None:
        """EOF on a runner channel: the end of that stream, unless it looks like a disconnect.
        Waits (up to disconnect_settle) for the first sign either way, not in 10 ms steps:
        the completion benchmarks read the end of output here."""
        with anyio.move_on_after(self.host.disconnect_settle):
            await _first(self._finished_event, self._exited, session.monitoring_closed)
        if session.monitoring_closed.is_set() and not self._finished and not self.exited:
            self._held_eof.add(channel)  # ended by a reconnect's EOF or by the exit
            return
        self._channels[channel].end()

    async def _read_monitoring(self, session: _Session) -> None:
        reader = session.readers[STHChannel.MONITORING]
        decoder = sth.MessageDecoder()
        try:
            while True:
                try:
                    chunk = await reader.receive(_READ_SIZE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    break
                await self._decode(session, decoder, chunk)
            await self._decode(session, decoder, None)
        finally:
            session.monitoring_closed.set()

    async def _decode(self, session: _Session, decoder: sth.MessageDecoder, chunk: bytes | None) -> None:
        """Act on every good line; a bad line is logged and skipped (STH would break its pipeline)."""
        data: bytes = b"" if chunk is None else chunk
        while True:
            try:
                messages = decoder.eof() if chunk is None else decoder.feed(data)
                failed = False
            except sth.STHProtocolError as err:
                log.warning("instance %s: %s", self.id, err)
                self.protocol_errors.append(err)
                messages, failed = err.frames, True
            for code, body in messages:
                await self._on_message(session, code, body)
            if not failed:
                return
            data = b""

    async def _reply(self, session: _Session, code: int, data: Mapping[str, Any]) -> None:
        try:
            await self._write(STHChannel.CONTROL, sth.encode_host_message(code, data), session)
        except STHInstanceGone as err:
            log.info("instance %s: %s", self.id, err)

    async def _on_message(self, session: _Session, code: int, data: dict[str, Any]) -> None:
        if code not in sth.RUNNER_TO_HOST_CODES:
            err = sth.STHProtocolError(
                f"instance {self.id} sent code {code}, which an STH host has no handler for"
            )
            log.warning("%s", err)
            self.protocol_errors.append(err)
            return
        if code == STHCode.MONITORING:
            self.heartbeats += 1
            await self._reply(session, STHCode.MONITORING_REPLY, {})
            self._last_health = {**data, "processId": self.pid}
            self._health_seen.set()
        elif code == STHCode.PING:
            await self._on_ping(session, data)
        elif code == STHCode.PANG:
            self._on_pang(data)
        elif code == STHCode.EVENT:
            name = data.get("eventName")
            if isinstance(name, str):
                message = data.get("message")
                self._publish(name, message)
                if self.host.forward_events:
                    self.host._forward_event(self, name, message)
        elif code == STHCode.ALIVE:
            self.keepalive_requested = True
        elif code == STHCode.SEQUENCE_STOPPED:
            self._finish()
            self.sequence_error = data.get("sequenceError")
            self.host._spawn(self._watchdog, "SEQUENCE_STOPPED", True)
        elif code == STHCode.SEQUENCE_COMPLETED:
            self._finish()
            self.host._spawn(self._watchdog, "SEQUENCE_COMPLETED", False)
        else:  # DESCRIBE_SEQUENCE, ERROR, ACKNOWLEDGE, STATUS: no host behaviour in STH
            self.reports[code] = data

    async def _on_ping(self, session: _Session, data: dict[str, Any]) -> None:
        self.pings += 1
        self.ping = data
        payload = data.get("payload")
        if not isinstance(payload, dict):
            err = sth.STHProtocolError(f"instance {self.id}: PING without payload")
            self.protocol_errors.append(err)
            return
        if self.status not in ("stopping", "killing"):
            self.status = data.get("status") or "running"
        self.input_headers_sent = bool(data.get("inputHeadersSent"))
        self.created = data.get("created")
        self.app_config = payload.get("appConfig")
        self.args = payload.get("args")
        self.requires = self.requires or payload.get("inputTopic") or ""
        self.provides = self.provides or payload.get("outputTopic") or ""
        pid = (payload.get("system") or {}).get("processPID")
        try:
            self.pid = int(pid) if pid is not None else self.pid
        except (TypeError, ValueError):
            self.protocol_errors.append(sth.STHProtocolError(f"bad processPID {pid!r}"))
        await self._reply(session, STHCode.PONG, sth.pong_data(self.app_config, self.args))
        self._established.set()
        if (
            self.pid is not None
            and not self._poller_started
            and (not self.spawned or self.host.exit_code_source == "file")
        ):
            self._poller_started = True
            self.host._spawn(self._poll_exit_code_file)

    def _on_pang(self, data: dict[str, Any]) -> None:
        self.pangs.append(data)
        requires, provides = data.get("requires") or "", data.get("provides") or ""
        self.requires = self.requires or requires
        self.provides = self.provides or provides
        if requires and data.get("contentType"):
            # STH's dispatcher routes the topic to IN: raw bytes, no header block
            self.input_from_topic = True
            self.input_headers_sent = True
        if not self._running.is_set():
            self._running.set()
            if self.status in ("initializing", "starting"):
                self.status = "running"

    # -- exit -------------------------------------------------------------------------------
    def _read_exit_file(self) -> int | None:
        if self.pid is None:
            return None
        path = sth.exit_code_file(self.pid)
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            return None
        try:
            code = int(text)
        except ValueError:
            return None
        self.exit_code_from_file = code
        try:
            os.unlink(path)
        except OSError:
            pass
        return code

    async def _poll_exit_code_file(self) -> None:
        """The process adapter's way: poll /tmp/runner-<pid>; a vanished PID without it is 213."""
        while not self.exited:
            code = self._read_exit_file()
            if code is not None:
                self._set_exit(code)
                return
            if self.pid is not None and not _pid_alive(self.pid):
                code = self._read_exit_file()
                self._set_exit(EXIT_CODE_UNKNOWN if code is None else code)
                return
            await anyio.sleep(self.host.exit_poll_interval)

    async def _watch_process(self, proc: anyio.abc.Process) -> None:
        async def pump(stream: anyio.abc.ByteReceiveStream | None) -> None:
            if stream is None:
                return
            async for chunk in stream:
                self.crash_log += chunk
                if len(self.crash_log) > _CRASH_LOG_LIMIT:
                    del self.crash_log[: len(self.crash_log) - _CRASH_LOG_LIMIT]

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, proc.stdout)
            tg.start_soon(pump, proc.stderr)
            rc = await proc.wait()
        if self.host.exit_code_source == "file":
            # the process adapter: only the exit-code file counts once the PING told the PID;
            # before it, STH's start request fails with the spawned process's own exit code
            if not self.exited:
                if self.pid is None:
                    self.pid = proc.pid
                    code = self._read_exit_file()
                    self._set_exit(code if code is not None else 137 if rc < 0 else rc)
                    return
                code = self._read_exit_file()
                self._set_exit(EXIT_CODE_UNKNOWN if code is None else code)
            return
        self._read_exit_file()
        self._set_exit(137 if rc < 0 else rc)  # a signal death is reported as 137, as STH does

    def _set_exit(self, code: int) -> None:
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


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _remove_stale_exit_file(pid: int) -> None:
    """Forget a /tmp/runner-<pid> of an earlier process with this (reused) PID: the new
    runner has not run yet, so any such file would be read as its exit code."""
    try:
        os.unlink(sth.exit_code_file(pid))
    except OSError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class STHHost:
    """Listens like STH's instance server; spawns runners like its process adapter.

    Use as an async context manager::

        async with STHHost(port=0) as host:
            inst = await host.start("/path/to/sequence", app_config={}, args=["a"])
            await inst.send_input(b"hello\\n"); await inst.end_input()
            print(await inst.read_all()); print(await inst.wait())
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = sth.DEFAULT_PORT,
        python: str | None = None,
        runner_command: Sequence[str] = DEFAULT_RUNNER_COMMAND,
        startup_log: str | None = DEFAULT_STARTUP_LOG,
        runner_envs: Mapping[str, str] | None = None,
        runner_pythonpath: str | None = None,
        cwd: str | None = None,
        exit_grace: float = DEFAULT_EXIT_GRACE,
        term_grace: float = 2.0,
        exit_poll_interval: float = 1.0,
        exit_code_source: str = "process",
        preamble_timeout: float = 10.0,
        disconnect_settle: float = 0.1,
        forward_events: bool = True,
        buffer_chunks: int = 256,
    ) -> None:
        if exit_code_source not in ("process", "file"):
            raise ValueError("exit_code_source must be 'process' or 'file'")
        self.listen_host = host
        self._port = port
        self.python = python
        self.runner_command = tuple(runner_command)
        self.startup_log = startup_log
        self.runner_envs = dict(runner_envs or {})
        self.runner_pythonpath = runner_pythonpath
        self.cwd = cwd
        self.exit_grace = exit_grace
        self.term_grace = term_grace
        self.exit_poll_interval = exit_poll_interval
        #: "process": a spawned runner's exit code is its process's; "file": only
        #: /tmp/runner-<pid> counts (213 when missing), like STH's process adapter.
        self.exit_code_source = exit_code_source
        self.preamble_timeout = preamble_timeout
        self.disconnect_settle = disconnect_settle
        self.forward_events = forward_events
        self.buffer_chunks = buffer_chunks
        self.instances: dict[str, STHInstance] = {}
        self.refused: list[str] = []
        self._in_progress: dict[str, dict[int, tuple[anyio.abc.SocketStream, BufferedByteReceiveStream]]] = {}
        self._accepted_send, self._accepted_recv = anyio.create_memory_object_stream[STHInstance](math.inf)
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None

    @property
    def port(self) -> int:
        return self._port

    async def __aenter__(self) -> STHHost:  # noqa: PYI034
        listener = await anyio.create_tcp_listener(local_host=self.listen_host, local_port=self._port)
        self._listener = listener
        self._port = listener.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for sub in listener.listeners:
            assert isinstance(sub, anyio.abc.SocketListener)
            self._tg.start_soon(self._accept_loop, sub)
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        assert self._tg is not None and self._listener is not None
        with anyio.CancelScope(shield=True):
            procs = [inst._process for inst in self.instances.values() if inst._process is not None]
            for proc in procs:
                if proc.returncode is None:
                    _signal_group(proc.pid, signal.SIGKILL)
            # reap them before the loop goes away (an exit-code file can come before the exit)
            with anyio.move_on_after(5):
                for proc in procs:
                    await proc.wait()
            await self._listener.aclose()
            for conns in self._in_progress.values():
                for stream, _ in conns.values():
                    await stream.aclose()
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(*exc)  # type: ignore[arg-type]

    def _spawn(self, func: Any, *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(func, *args)

    # -- accepting ------------------------------------------------------------------
    async def _accept_loop(self, listener: anyio.abc.SocketListener) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            self._spawn(self._handle_connection, stream)

    async def _handle_connection(self, stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        try:
            with anyio.fail_after(self.preamble_timeout):
                raw = await reader.receive_exactly(sth.PREAMBLE_LENGTH)
            instance_id, channel = sth.parse_preamble(raw)
        except (
            TimeoutError,
            anyio.IncompleteRead,
            anyio.EndOfStream,
            sth.BadPreamble,
            OSError,
            anyio.BrokenResourceError,
        ) as err:
            self.refused.append(f"bad preamble: {err!r}")
            log.warning("refusing an STH connection: %r", err)
            await stream.aclose()
            return
        pending = self._in_progress.setdefault(instance_id, {})
        if int(channel) in pending:
            self.refused.append(f"duplicate channel {int(channel)} for {instance_id}")
            log.warning("refusing a second connection for channel %d of %s", channel, instance_id)
            await stream.aclose()
            return
        pending[int(channel)] = (stream, reader)
        if len(pending) < sth.CHANNEL_COUNT:
            return
        del self._in_progress[instance_id]
        session = _Session(
            streams={ch: s for ch, (s, _) in pending.items()},
            readers={ch: r for ch, (_, r) in pending.items()},
        )
        inst = self.instances.get(instance_id)
        if inst is None:
            inst = STHInstance(self, instance_id, spawned=False)
            self.instances[instance_id] = inst
            self._accepted_send.send_nowait(inst)
        elif inst.exited:
            self.refused.append(f"instance {instance_id} has already exited")
            for s in session.streams.values():
                await s.aclose()
            return
        await inst._run_session(session)

    async def accept(self) -> STHInstance:
        """The next instance that connected without ``start()`` (a runner started elsewhere)."""
        return await self._accepted_recv.receive()

    # -- spawning ---------------------------------------------------------------------
    async def start(
        self,
        sequence_path: str | os.PathLike[str],
        app_config: Mapping[str, Any] | None = None,
        args: Sequence[Any] | None = None,
        *,
        instance_id: str | None = None,
        input_topic: str | None = None,
        output_topic: str | None = None,
        limits: Mapping[str, Any] | None = None,
        sequence_info: Mapping[str, Any] | None = None,
        runner_envs: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> STHInstance:
        """Spawn a runner like STH's process adapter and wait for its PING ("established").

        Raises STHStartError (with the exit code and crash log) if it exits first.
        """
        iid = instance_id or str(uuid.uuid4())
        if len(iid) != sth.INSTANCE_ID_LENGTH:
            raise ValueError(f"instance id must have {sth.INSTANCE_ID_LENGTH} characters")
        if iid in self.instances:
            raise ValueError(f"instance {iid} exists")
        seq_path, info = sequence_info_for(sequence_path, str(uuid.uuid4()))
        if sequence_info is not None:
            info = dict(sequence_info)
        connect_info: dict[str, Any] = {}
        if app_config is not None:
            connect_info["appConfig"] = dict(app_config)
        if args is not None:
            connect_info["args"] = list(args)
        if output_topic:
            connect_info["outputTopic"] = output_topic
        if input_topic:
            connect_info["inputTopic"] = input_topic
        if limits is not None:
            connect_info["limits"] = dict(limits)
        if instance_id is not None:
            connect_info["instanceId"] = instance_id
        env = runner_env(
            sequence_path=seq_path,
            instance_id=iid,
            port=self.port,
            sequence_info=info,
            connect_info=connect_info,
            runner_pythonpath=self.runner_pythonpath,
            runner_envs={**self.runner_envs, **(runner_envs or {})},
        )
        inst = STHInstance(self, iid, spawned=True)
        self.instances[iid] = inst
        argv = runner_argv(self.python, self.runner_command, self.startup_log)
        proc = await anyio.open_process(
            argv,
            env=env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # STH spawns detached
        )
        inst._process = proc
        _remove_stale_exit_file(proc.pid)
        inst.status = "starting"
        self._spawn(inst._watch_process, proc)
        try:
            with anyio.fail_after(start_timeout):
                await _first(inst._established, inst._exited)
        except TimeoutError:
            await inst.remove()
            raise STHStartError(
                f"runner did not PING within {start_timeout}s",
                inst.exit_code,
                inst.crash_log.decode(errors="replace"),
            ) from None
        if not inst._established.is_set():
            raise STHStartError(
                f"runner exited with code {inst.exit_code} before its PING; crash log tail: "
                f"{inst.crash_log[-2000:].decode(errors='replace')}",
                inst.exit_code,
                inst.crash_log.decode(errors="replace"),
            )
        return inst

    def _forward_event(self, source: STHInstance, name: str, message: Any) -> None:
        """STH's event bus: an instance's event goes to every other connected instance."""

        async def send(target: STHInstance) -> None:
            try:
                await target.send_event(name, message, source=source.id)
            except (STHError, LocalProtocolError):
                pass

        for inst in self.instances.values():
            if inst is not source and inst.connected and not inst.exited:
                self._spawn(send, inst)


async def _first(*events: anyio.Event) -> None:
    """Until any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)
