"""Bridge: owns many Instances and the listeners runners connect to.

Use it as ``async with Bridge() as bridge:``. Every Instance's supervision task
runs in the bridge's task group; leaving the block kills what still runs
(KILL, then signals, bounded) and reaps every process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

if sys.version_info >= (3, 11):
    from typing import Self, Unpack
else:  # anyio depends on typing_extensions before 3.13
    from typing_extensions import Self, Unpack

import anyio
import anyio.abc

from runner.protocol import ProtocolError

from .cgroups import CgroupTree
from .containment import SCOPE_ENV, Containment
from .errors import BridgeError, SpawnError
from .external import RunnerStarter
from .instance import Instance
from .link import HandshakeFailed, SocketStream, host_connection, read_ping, widen_send_buffer
from .listeners import (
    MAX_PENDING_HANDSHAKES,
    Listener,
    PendingHandshakes,
    Refusal,
    Refusals,
    bind_tcp,
    bind_unix,
    peer_text,
)
from .options import InstanceOptions, OptionOverrides
from .process import SpawnOptions, start_process
from .supervisor import Supervisor, reject_and_close, verify_ping
from .zygote import WarmStarts


def _socketpair() -> tuple[socket.socket, socket.socket]:
    """The spawned runner's connection; both ends get link.SOCKET_BUFFER (ours as a SocketStream)."""
    ours, theirs = socket.socketpair()
    widen_send_buffer(theirs)
    return ours, theirs


class Bridge:
    """Starts runners or accepts their connections; one Instance per runner.

    Keyword arguments are the defaults for every Instance (see InstanceOptions):
    ``window``, ``max_frame_size``, ``handshake_timeout``, ``exit_grace``,
    ``term_grace``, ``heartbeat_timeout``, ``protocol_error_grace``; plus
    ``python`` (the interpreter that runs ``-m runner``) and ``shutdown_timeout``.
    """

    def __init__(
        self,
        *,
        python: str = sys.executable,
        shutdown_timeout: float = 10.0,
        max_pending_handshakes: int = MAX_PENDING_HANDSHAKES,
        cgroups: bool = True,
        warm: bool | None = None,
        **defaults: Unpack[OptionOverrides],
    ) -> None:
        self.python = python
        if warm is None:  # the test suites run warm with HOST_BRIDGE_WARM=1 (docs/host_bridge.md)
            warm = os.environ.get("HOST_BRIDGE_WARM", "").strip() == "1"
        #: Warm starts (host_bridge.zygote): runners forked from a template, or None (cold only).
        self.warm: WarmStarts | None = WarmStarts(python) if warm else None
        self._cgroups = CgroupTree(cgroups)
        self.shutdown_timeout = shutdown_timeout
        self.defaults = InstanceOptions(**defaults)
        self.instances: dict[str, Instance] = {}
        self._refusals = Refusals()
        #: The latest refused connections (bounded: see host_bridge.listeners); ``refused_count`` counts all.
        self.refused: list[Refusal] = self._refusals.items
        self._pending = PendingHandshakes(max_pending_handshakes, self._refusals)
        self.listeners: list[Listener] = []
        self._supervisors: dict[str, Supervisor] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self.warm is not None:
            self._tg.start_soon(self.warm.ready)  # the template's start-up is not the first spawn's
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        finally:
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            result = await self._tg.__aexit__(exc_type, exc, tb)
        return result

    def _group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise BridgeError("use the Bridge as `async with Bridge() as bridge:`")
        if self._closing:
            raise BridgeError("the bridge is closing")
        return self._tg

    def _options(
        self,
        sequence: str | None,
        args: Sequence[Any] | None,
        app_config: Mapping[str, Any] | None,
        input_content_type: str | None,
        overrides: OptionOverrides,
    ) -> InstanceOptions:
        known: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        return replace(
            self.defaults,
            sequence=sequence,
            args=list(args) if args is not None else None,
            app_config=dict(app_config) if app_config is not None else None,
            input_content_type=input_content_type,
            **known,
        )

    # -- starting runners -----------------------------------------------------------
    async def spawn(
        self,
        sequence: str | os.PathLike[str],
        *,
        args: Sequence[Any] | None = None,
        app_config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        cwd: str | os.PathLike[str] | None = None,
        python: str | None = None,
        command: Sequence[str] | None = None,
        extra_args: Sequence[str] = (),
        memory_limit: int | None = None,
        input_content_type: str | None = None,
        listener: Listener | None = None,
        instance_id: str | None = None,
        **options: Unpack[OptionOverrides],
    ) -> Instance:
        """Start ``python -m runner --sequence <sequence>`` for a new Instance.

        The runner gets an inherited socketpair (``--fd``) unless ``listener`` is
        given (then ``--connect <listener.address>``); its instance id and token
        go through the environment. ``command`` replaces ``[python, "-m", "runner"]``;
        ``memory_limit`` (bytes) sets RLIMIT_AS. ``options`` override the bridge's
        InstanceOptions for this Instance (e.g. ``exit_grace=2``). Returns once the
        process started (status "starting"); ``await instance.wait_started()``
        for the handshake. Raises SpawnError if the process cannot be started.
        """
        tg = self._group()
        sequence = os.path.abspath(sequence)  # the hub's path, whatever the runner's cwd
        opts = self._options(str(sequence), args, app_config, input_content_type, options)
        instance = self._new_instance(instance_id, opts)
        spec = SpawnOptions(
            sequence=str(sequence),
            python=python or self.python,
            command=command,
            extra_args=extra_args,
            env=env,
            inherit_env=inherit_env,
            cwd=os.fspath(cwd) if cwd is not None else None,
            memory_limit=memory_limit,
        )
        ours: socket.socket | None = None
        theirs: socket.socket | None = None
        group = self._cgroups.new_group()  # made first: a warm start is forked straight into it
        try:
            if listener is None:
                ours, theirs = _socketpair()
                spec.fd = theirs.fileno()
            else:
                spec.connect = listener.address
            scope = secrets.token_hex(8)
            spec.extra_env[SCOPE_ENV] = scope
            env_vars = spec.environment(instance.id, instance.token)
            process: anyio.abc.Process | None = None
            if self.warm is not None:
                process = await self.warm.start(spec, env_vars, theirs.fileno() if theirs else None, group)
            if process is None:
                process = await start_process(spec, env_vars, [theirs.fileno()] if theirs else [])
        except (OSError, ValueError, TypeError) as exc:
            del self.instances[instance.id]
            if ours is not None:
                ours.close()
            if group is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(group)
            raise SpawnError(f"cannot start the runner for {sequence}: {exc}") from exc
        finally:
            if theirs is not None:
                theirs.close()  # the child has its own copy; ours would hide its end of file
        stream = SocketStream(ours) if ours is not None else None
        containment = Containment(process.pid, group, scope)
        if not getattr(process, "in_cgroup", False):  # a warm start may have been born in it
            containment.adopt()  # before the handshake: before any Sequence code runs
        supervisor = Supervisor(instance, process, stream, containment)
        self._supervisors[instance.id] = supervisor
        tg.start_soon(supervisor.run)
        return instance

    def expect(
        self,
        instance_id: str | None = None,
        token: str | None = None,
        *,
        args: Sequence[Any] | None = None,
        app_config: Mapping[str, Any] | None = None,
        sequence: str | None = None,
        input_content_type: str | None = None,
        **options: Unpack[OptionOverrides],
    ) -> Instance:
        """Register an Instance whose runner is started elsewhere (a container) and connects in.

        Give the runner ``instance.id`` and ``instance.token`` (SEQUENCE_RUNNER_INSTANCE_ID,
        SEQUENCE_RUNNER_TOKEN) and a listener's address. The Instance fails if no runner
        connects within ``handshake_timeout``.
        """
        tg = self._group()
        opts = self._options(sequence, args, app_config, input_content_type, options)
        instance = self._new_instance(instance_id, opts, token)
        supervisor = Supervisor(instance, None, None)
        self._supervisors[instance.id] = supervisor
        tg.start_soon(supervisor.run)
        return instance

    async def launch(
        self,
        start: RunnerStarter,
        *,
        args: Sequence[Any] | None = None,
        app_config: Mapping[str, Any] | None = None,
        sequence: str | None = None,
        input_content_type: str | None = None,
        instance_id: str | None = None,
        **options: Unpack[OptionOverrides],
    ) -> Instance:
        """Start a runner elsewhere (a container, a pod) through ``start`` and supervise it.

        Like ``expect`` the Instance gets an id and a fresh token; then ``await start(instance)``
        starts the runner (give it ``instance.id``, ``instance.token`` and a listener's address) and
        returns its ExternalRunner handle (host_bridge.external). From then on the Instance is
        supervised as a spawned one: it ends as soon as the runner does (also before it
        connected), escalation signals go through ``handle.signal()``, and the report takes the
        exit code and OOM kill from ``handle.wait()``. SpawnError when ``start`` raises.
        """
        tg = self._group()
        opts = self._options(sequence, args, app_config, input_content_type, options)
        instance = self._new_instance(instance_id, opts)
        # registered before the runner starts, so that it may connect while ``start`` still runs
        supervisor = Supervisor(instance, None, None, launched=True)
        self._supervisors[instance.id] = supervisor
        try:
            handle = await start(instance)
        except BaseException as exc:
            del self.instances[instance.id]
            self._supervisors.pop(instance.id, None)
            if isinstance(exc, Exception):
                raise SpawnError(f"cannot start the runner for instance {instance.id}: {exc}") from exc
            raise
        supervisor.attach_external(handle)
        tg.start_soon(supervisor.run)
        return instance

    def _new_instance(self, instance_id: str | None, opts: InstanceOptions, token: str | None = None) -> Instance:
        instance_id = instance_id or str(uuid.uuid4())
        if instance_id in self.instances:
            raise BridgeError(f"instance id {instance_id} is already in use")
        instance = Instance(instance_id, token or secrets.token_urlsafe(32), opts)
        self.instances[instance_id] = instance
        return instance

    # -- listening -------------------------------------------------------------------
    async def listen_unix(self, path: str | os.PathLike[str] | None = None) -> Listener:
        """Accept runners on a unix socket (address ``unix:<path>``), mode 0600 whatever the umask.

        Without ``path`` the socket lives in a fresh 0700 directory removed at close; a missing
        parent directory of ``path`` is created 0700."""
        self._group()
        sock, bound, private = bind_unix(os.fspath(path) if path is not None else None)
        await anyio.lowlevel.checkpoint()
        return self._start_listener(sock, f"unix:{bound}", bound, private)

    async def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> Listener:
        """Accept runners on TCP (port 0 picks a free port; see ``listener.address``)."""
        self._group()
        sock = bind_tcp(host, port)
        bound = sock.getsockname()
        await anyio.lowlevel.checkpoint()
        return self._start_listener(sock, f"tcp:{bound[0]}:{bound[1]}", None, None)

    def _start_listener(self, sock: socket.socket, address: str, path: str | None, private: str | None) -> Listener:
        tg = self._group()
        listener = Listener(sock, address, path, private, self._handle_connection, self._pending)
        self.listeners.append(listener)
        tg.start_soon(listener._serve, tg)
        return listener

    @property
    def refused_count(self) -> int:
        """Connections refused since the bridge started (``refused`` keeps only the latest)."""
        return self._refusals.total

    @property
    def pending_handshakes(self) -> int:
        """Accepted connections that have not sent their PING yet."""
        return self._pending.count

    async def _handle_connection(self, stream: SocketStream) -> None:
        conn = host_connection(self.defaults)
        try:
            with anyio.fail_after(self.defaults.handshake_timeout):
                ping = await read_ping(stream, conn)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
        except (TimeoutError, ProtocolError, HandshakeFailed) as exc:
            text = "no PING within the handshake timeout" if isinstance(exc, TimeoutError) else str(exc)
            self._refusals.add(None, text[:1024])
            await reject_and_close(stream, conn, None)
            return
        claimed = ping.instance_id
        instance = self.instances.get(claimed)
        supervisor = self._supervisors.get(claimed)
        reason = verify_ping(instance if supervisor is not None and supervisor.stream is None else None, ping)
        if reason is None and supervisor is not None and not supervisor.awaiting_connection:
            reason = f"duplicate connection for instance {claimed}"
        if reason is not None or supervisor is None:
            reason = reason or f"unknown instance id {peer_text(claimed)}"
            self._refusals.add(claimed, reason)
            await reject_and_close(stream, conn, reason)
            return
        supervisor.attach(stream, conn, ping)

    # -- lookup and shutdown ----------------------------------------------------------
    def get(self, instance_id: str) -> Instance:
        return self.instances[instance_id]

    def forget(self, instance_id: str) -> None:
        """Drop an ended Instance from ``instances`` (a hub's finalize step)."""
        instance = self.instances[instance_id]
        if not instance.done.is_set():
            raise BridgeError(f"instance {instance_id} is still {instance.status.value}")
        del self.instances[instance_id]
        self._supervisors.pop(instance_id, None)

    async def aclose(self) -> None:
        """Kill every Instance still running (bounded), reap them, close the listeners."""
        self._closing = True
        for listener in list(self.listeners):
            await listener.aclose()
        self.listeners.clear()
        running = [inst for inst in self.instances.values() if not inst.done.is_set()]
        for inst in running:
            await inst.kill()
        with anyio.move_on_after(self.shutdown_timeout):
            for inst in running:
                await inst.done.wait()
        for inst in running:
            if not inst.done.is_set():
                await inst.kill()  # second kill: SIGKILL now
        with anyio.move_on_after(self.shutdown_timeout):
            for inst in running:
                await inst.done.wait()
        self._cgroups.close()
        if self.warm is not None:
            await self.warm.aclose()
