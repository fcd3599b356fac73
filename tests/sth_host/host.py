"""An STH-protocol host: listens like STH's instance server and spawns runners like its process adapter.

Used by tests and benchmarks to check STH compatibility without Node (it is not
shipped: hubs use host_bridge). Nothing of an instance is processed until all
nine of its channels are connected; a known instance id may reconnect.
``protocol="0.18"`` makes it an 0.18-style host (``@scramjet/host`` 0.18.7, docs/sth-compat.md §6):
0.18's environment, eight channels, no MONITORING_REPLY, appConfig/args in PONG only, topics
routed on every PANG naming one (legacy.py).
Process handling (signals, escalation) and channel buffers are host_bridge's.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from host_bridge.escalation import Escalation
from host_bridge.process import signal_group
from host_bridge.sth import (
    DEFAULT_RUNNER_COMMAND,
    DEFAULT_STARTUP_LOG,
    runner_argv,
    runner_env,
    sequence_info_for,
)
from runner.protocol import sth
from runner.protocol.errors import LocalProtocolError
from runner.protocol.stop import DEFAULT_EXIT_GRACE

from .channels import Session, first
from .exits import remove_stale_exit_file, watch_process
from .instance import STHError, STHInstance, STHStartError
from .legacy import PROTOCOLS, channel_count, runner_env_0_18
from .receive import serve

log = logging.getLogger("sth_host")

_BAD_PREAMBLE = (TimeoutError, anyio.IncompleteRead, anyio.EndOfStream, sth.BadPreamble, OSError,
                 anyio.BrokenResourceError)


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
        buffer_bytes: int = 16 << 20,
        around_pong: tuple[Sequence[tuple[int, Mapping[str, Any]]], Sequence[tuple[int, Mapping[str, Any]]]] = (
            (), ()),
        protocol: str = "1.0",
    ) -> None:
        if exit_code_source not in ("process", "file"):
            raise ValueError("exit_code_source must be 'process' or 'file'")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")
        #: "1.0" (STH 1.0.x, the default) or "0.18" (an 0.18-style host: legacy.py).
        self.protocol = protocol
        #: Connections an instance opens (9; 8 on 0.18). One beyond them is refused: 0.18.7 throws
        #: there, and under Node >= 15 that ends the hub (``refused`` names it).
        self.channel_count = channel_count(protocol)
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
        #: Unread bytes kept per runner channel before the host stops reading it.
        self.buffer_bytes = buffer_bytes
        #: CONTROL messages (code, data) written just before and just after the first PONG of each
        #: Instance, in the same write (a runner must keep what comes before PONG: ref §3.2).
        self.around_pong = around_pong
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
                    signal_group(proc.pid, signal.SIGKILL)
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

    def spawn_task(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(func, *args)

    # -- accepting ------------------------------------------------------------------
    async def _accept_loop(self, listener: anyio.abc.SocketListener) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            self.spawn_task(self._handle_connection, stream)

    async def _handle_connection(self, stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        try:
            with anyio.fail_after(self.preamble_timeout):
                raw = await reader.receive_exactly(sth.PREAMBLE_LENGTH)
            instance_id, channel = sth.parse_preamble(raw)
        except _BAD_PREAMBLE as err:
            self.refused.append(f"bad preamble: {err!r}")
            log.warning("refusing an STH connection: %r", err)
            await stream.aclose()
            return
        if int(channel) >= self.channel_count:
            self.refused.append(f"channel {int(channel)} for {instance_id}: an STH {self.protocol} host "
                                f"takes {self.channel_count} connections")
            log.warning("refusing channel %d of %s (STH %s)", channel, instance_id, self.protocol)
            await stream.aclose()
            return
        pending = self._in_progress.setdefault(instance_id, {})
        if int(channel) in pending:
            self.refused.append(f"duplicate channel {int(channel)} for {instance_id}")
            log.warning("refusing a second connection for channel %d of %s", channel, instance_id)
            await stream.aclose()
            return
        pending[int(channel)] = (stream, reader)
        if len(pending) < self.channel_count:
            return
        del self._in_progress[instance_id]
        session = Session(
            streams={ch: s for ch, (s, _) in pending.items()},
            readers={ch: r for ch, (_, r) in pending.items()},
        )
        await self._open_session(instance_id, session)

    async def _open_session(self, instance_id: str, session: Session) -> None:
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
        await serve(inst, session)

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
        connect_info = _connect_info(app_config, args, input_topic, output_topic, limits, instance_id)
        if self.protocol == "0.18":  # no SEQUENCE_INFO/RUNNER_CONNECT_INFO, no runnerEnvs setting
            env = runner_env_0_18(sequence_path=seq_path, instance_id=iid, port=self.port,
                                  runner_pythonpath=self.runner_pythonpath, extra=runner_envs)
        else:
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
        if self.protocol == "0.18":  # PONG carries the start request's appConfig/args (keys only if given)
            inst.app_config, inst.args = connect_info.get("appConfig"), connect_info.get("args")
            inst.reply_to_heartbeats = False
        self.instances[iid] = inst
        proc = await anyio.open_process(
            runner_argv(self.python, self.runner_command, self.startup_log),
            env=env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # STH spawns detached
        )
        inst._process = proc
        inst._escalation = Escalation(proc.pid, self.term_grace, inst._process_exited, lambda: None)
        remove_stale_exit_file(proc.pid)
        inst.status = "starting"
        self.spawn_task(watch_process, inst, proc)
        self.spawn_task(inst._escalation.run)
        await self._established(inst, start_timeout)
        return inst

    async def _established(self, inst: STHInstance, start_timeout: float) -> None:
        try:
            with anyio.fail_after(start_timeout):
                await first(inst._established, inst._exited)
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

    def forward_event(self, source: STHInstance, name: str, message: Any) -> None:
        """STH's event bus: an instance's event goes to every other connected instance."""

        async def send(target: STHInstance) -> None:
            try:
                await target.send_event(name, message, source=source.id)
            except (STHError, LocalProtocolError):
                pass

        for inst in self.instances.values():
            if inst is not source and inst.connected and not inst.exited:
                self.spawn_task(send, inst)


def _connect_info(
    app_config: Mapping[str, Any] | None,
    args: Sequence[Any] | None,
    input_topic: str | None,
    output_topic: str | None,
    limits: Mapping[str, Any] | None,
    instance_id: str | None,
) -> dict[str, Any]:
    """RUNNER_CONNECT_INFO as STH builds it: keys only for what was given."""
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
    return connect_info
