"""The Instance handle: one runner, its channels, events, health and lifecycle.

The Instance owns its state. The supervision task (supervisor.py) drives it only
through the ``_accept_runner``/``_connection_closed``/``_finish`` family of
methods; what the runner sends arrives through the Receiver (receive.py), and
every change of status or lifecycle is published as an ``InstanceState`` a hub
can await (``wait_running``, ``wait_until``) or iterate (``state_changes``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

if sys.version_info >= (3, 11):
    from typing import Self
else:  # anyio depends on typing_extensions before 3.13
    from typing_extensions import Self

import anyio
import anyio.lowlevel

from runner.protocol import Kill, LocalProtocolError, MonitoringRate, Ping, Pong, State, Status, Stop, codec
from runner.protocol.connection import Connection, ConnectionEvent
from runner.protocol.events import Message

from .deprecated import DeprecatedAttributes
from .errors import InstanceEnded, InstanceNotRunning
from .escalation import Escalation
from .events import EventHub, EventMemory
from .info import InstanceInfo
from .inputs import InputSide
from .link import Link, SocketStream, host_connection
from .options import InstanceOptions
from .process import TailBuffer
from .receive import Receiver
from .report import ExitReport
from .state import InstanceState, StateSubscription, StateWatch
from .stats import Health, HeartbeatMonitor, HeartbeatStats, HeartbeatUpdates
from .streams import InstanceStreams

#: Lifecycle states after which run() can no longer start.
_NEVER_RUNNING = (State.KILLED, State.ERRORED, State.EXITED)
#: Seconds ``aclose()`` waits for the reaper after SIGKILL before returning anyway.
_REAP_WAIT = 10.0


def _now_utc() -> datetime:
    return datetime.now(timezone.utc)


class Instance(InstanceStreams, DeprecatedAttributes):
    """A handle on one runner process (spawned or connected in). Created by a Bridge."""

    def __init__(self, instance_id: str, token: str, options: InstanceOptions) -> None:
        self.id = instance_id
        self.token = token
        self.options = options
        self.info = InstanceInfo(
            id=instance_id,
            sequence=options.sequence,
            created=_now_utc(),
            args=options.args,
            app_config=options.app_config,
        )
        self._watch = StateWatch(InstanceState(Status.INITIALIZING))
        self._conn = host_connection(options)  # replaced by the one that completed the handshake
        self._link: Link | None = None
        self._closed = False  # no more writes possible
        self._monitor = HeartbeatMonitor(options.heartbeat_timeout)
        self._receiver = Receiver(
            self.info, self._monitor, EventHub(options.event_names, options.event_memory), self._consumed, self._credit, self._mark_running, self._exit_deadline,
            anyio.current_time,
        )
        self._input = InputSide(self._open_link, options.input_content_type, self._link_now)
        self._escalation: Escalation | None = None
        self.connected = anyio.Event()  # handshake accepted
        self.ready = anyio.Event()  # connected, or ended without connecting
        self.done = anyio.Event()  # the runner exited, was reaped and reported
        self.stop_requested = False
        self.kill_requested = False

    def __repr__(self) -> str:
        return f"<Instance {self.id} {self.status.value} pid={self.info.pid}>"

    # -- state ----------------------------------------------------------------
    @property
    def status(self) -> Status:
        return self._watch.current.status

    @property
    def state(self) -> InstanceState:
        """The current InstanceState (status, protocol lifecycle, running, keepalive, topics, done)."""
        return self._watch.current

    def state_changes(self) -> StateSubscription:
        """Subscribe now: async-iterate the current state, then every change, ending after the final one.

        Each subscriber has its own queue, so no change made after this call is missed
        (unless it falls 256 changes behind: the oldest are dropped, counted in ``dropped``).
        """
        return self._watch.subscribe()

    async def wait_until(self, predicate: Callable[[InstanceState], bool]) -> InstanceState:
        """The first state (the current one included) for which ``predicate`` is true.

        Raises InstanceEnded if the Instance ends without reaching one."""
        with self._watch.subscribe() as changes:
            async for state in changes:
                if predicate(state):
                    return state
        raise InstanceEnded(f"instance {self.id} ended ({self._ending()}) before the awaited state")

    async def wait_state(self, *statuses: Status) -> InstanceState:
        """Wait until the status is one of ``statuses`` (InstanceEnded if it ends in another)."""
        return await self.wait_until(lambda state: state.status in statuses)

    async def wait_running(self) -> InstanceState:
        """Wait until the Sequence's run() has started (its handlers registered before its first await).

        Raises InstanceEnded if the Instance ends, is killed or fails before that. The
        signal is the first heartbeat from the Sequence's running event loop (or earlier
        proof: output, an event, PANG provides), so it comes up to one heartbeat
        interval after run() started.
        """
        state = await self.wait_until(lambda s: s.running or s.done or s.lifecycle in _NEVER_RUNNING)
        if not state.running:
            raise InstanceEnded(f"instance {self.id} ended ({self._ending()}) before its Sequence was running")
        return state

    def _ending(self) -> str:
        """What ended the Instance so far: status, lifecycle, exit code and why, for error messages."""
        info = self.info
        runner_error = info.runner_error or {}
        parts = [f"{self.status.value}, lifecycle {self.state.lifecycle.value}"]
        for code in (info.exit_code, info.reported_exit_code, runner_error.get("exitCode")):
            if code is not None:
                parts.append(f"exit code {code}")
                break
        if runner_error.get("message"):
            parts.append(f"Sequence error: {runner_error['message']}")
        reason = info.error or info.exit_reason
        if reason:
            parts.append(reason)
        return "; ".join(parts)

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.aclose()

    async def aclose(self) -> None:
        """End the Instance and wait for it (bounded): STOP, KILL after the stop timeout, then signals."""
        if self.done.is_set():
            return
        options = self.options
        steps = (
            (self.stop, options.stop_timeout_ms / 1000.0 + 0.5),
            (self.kill, options.term_grace + 0.5),
            (self.kill, _REAP_WAIT),  # the second kill() is SIGKILL now
        )
        for step, bound in steps:
            await step()
            with anyio.move_on_after(bound):
                await self.done.wait()
            if self.done.is_set():
                return

    # -- health ------------------------------------------------------------------
    def health(self) -> Health:
        """The latest heartbeat and whether the runner counts as healthy now."""
        return self._monitor.health(anyio.current_time(), alive=not self.done.is_set())

    @property
    def healthy(self) -> bool:
        return self.health().healthy

    def event_memory(self) -> EventMemory:
        """What the last-event store holds and how many events it let go (see host_bridge.events)."""
        return self._receiver.events.memory()

    @property
    def stats(self) -> HeartbeatStats | None:
        """The last heartbeat, typed (None before the first)."""
        return self._monitor.last

    def heartbeat_updates(self) -> HeartbeatUpdates:
        """Subscribe now: async-iterate the heartbeats that arrive (the newest when several came meanwhile)."""
        return self._monitor.updates()

    @property
    def heartbeat(self) -> dict[str, Any] | None:
        """The last MONITORING body as received (``stats`` is the typed form)."""
        return self._monitor.body

    @property
    def heartbeats(self) -> int:
        return self._monitor.count

    # -- lifecycle control ---------------------------------------------------------
    def _send(self, link: Link, message: Message) -> None:
        """Queue and write one message; a refusal by the protocol means the runner is past taking it."""
        try:
            self._conn.send(message, anyio.current_time())
        except LocalProtocolError as exc:
            raise InstanceNotRunning(f"instance {self.id}: {exc}") from exc
        link.flush()
        self._sync()

    async def stop(self, timeout_ms: float | None = None, can_call_keepalive: bool = False) -> None:
        """Ask the Sequence to stop: STOP now, KILL after ``timeout_ms`` unless it asks for keepalive.

        ``timeout_ms`` defaults to the ``stop_timeout_ms`` option (7000, as STH).

        Returns once STOP is queued; ``wait()`` for the exit. Escalation continues by
        itself: KILL at the stop timeout (the Connection's deadline), then SIGTERM and
        SIGKILL after the exit and term graces.
        """
        if self.done.is_set():
            return
        if not self.connected.is_set() or self._closed or self._link is None:
            await self.kill()
            return
        if timeout_ms is None:
            timeout_ms = self.options.stop_timeout_ms
        self.stop_requested = True
        if self.status is not Status.KILLING:
            self._set_status(Status.STOPPING)
        self.info.keepalive_ms = None
        try:
            self._send(self._link, Stop(timeout_ms=timeout_ms, can_keep_alive=can_call_keepalive))
        except InstanceNotRunning:
            return  # the runner is already exiting

    async def kill(self) -> None:
        """KILL the runner now; a second kill() (or a runner that does not exit) escalates to signals."""
        if self.done.is_set():
            return
        if self.kill_requested:
            if self._escalation is not None:
                self._escalation.kill_now()
            return
        self.kill_requested = True
        self._set_status(Status.KILLING)
        if self.connected.is_set() and not self._closed and self._link is not None:
            try:
                self._send(self._link, Kill())
                return
            except InstanceNotRunning:
                pass  # the runner is exiting already; make sure it does
        if self._escalation is not None:
            self._escalation.terminate()

    async def set_monitoring_rate(self, per_second: float) -> None:
        """Heartbeats per second (0 turns them off, and with them the staleness check)."""
        link = await self._open()
        self._monitor.rate = float(per_second)
        self._send(link, MonitoringRate(rate=per_second))

    # -- driven by the supervision task and the link ------------------------------
    def _set_status(self, status: Status) -> None:
        self._watch.update(status=status)

    def _sync(self) -> None:
        # After every read and every message sent: most change nothing, so a plain look first,
        # before update()'s keyword arguments and field-by-field look.
        info = self.info
        current = self._watch.current
        if (
            current.lifecycle is self._conn.lifecycle.state
            and current.keepalive_ms == info.keepalive_ms
            and current.requires == info.requires
            and current.provides == info.provides
        ):
            return
        self._watch.update(
            lifecycle=self._conn.state, keepalive_ms=info.keepalive_ms, requires=info.requires, provides=info.provides
        )

    def _mark_running(self) -> None:
        # Called for every OUT chunk: once running, skip update()'s dataclass copy and compare
        # (about 10 us, a sixth of the host's CPU per 64 KiB chunk of bulk output).
        if not self._watch.current.running:
            self._watch.update(running=True)

    def _credit(self, channel: int) -> None:
        self._input.credit_available(channel)

    def _exit_deadline(self) -> None:
        # The Connection queued KILL if one was due (and with it a new exit deadline);
        # when none was, the runner outlived the exit grace: only signals are left.
        if self._conn.next_deadline() is None and self._escalation is not None:
            self._escalation.terminate()

    def _on_events(self, events: list[ConnectionEvent]) -> None:
        self._receiver.on_events(events)
        self._sync()

    def _supervised_by(self, escalation: Escalation, pid: int | None, cgroup: str | None) -> None:
        self._escalation = escalation
        self.info.cgroup = cgroup
        if pid is not None:
            self.info.pid = pid
        if self.status is Status.INITIALIZING:
            self._set_status(Status.STARTING)

    def _accept_runner(
        self, stream: SocketStream, conn: Connection, ping: Ping, on_failure: Callable[[str, bool], None]
    ) -> Link:
        """The runner's PING passed the checks: answer PONG and serve the connection through a Link."""
        self._conn = conn
        self.info.runner = {k: v for k, v in codec.to_body(ping).items() if k != "token"}
        if self.info.pid is None and ping.pid is not None:
            self.info.pid = ping.pid
        args = list(self.options.args) if self.options.args is not None else None
        conn.send(Pong(app_config=self.options.app_config, args=args, capabilities=[]), anyio.current_time())
        self._link = Link(stream, conn, self._on_events, on_failure)
        self._monitor.connected_at = anyio.current_time()
        self.info.started = _now_utc()
        if self.status is Status.STARTING:
            self._set_status(Status.RUNNING)
        self._sync()
        self.connected.set()
        self.ready.set()
        return self._link

    def _handshake_failed(self) -> None:
        self.ready.set()

    def _connection_closed(self) -> None:
        """The connection is gone: readers drain what is buffered, writers fail."""
        self._closed = True
        self._receiver.close()
        self._input.close()

    def _finish(self, report: ExitReport) -> None:
        """The runner was reaped: record how it ended and wake everyone waiting."""
        if self._link is not None:
            self._link.abort()
        self._connection_closed()
        report.apply(self.info)
        self.info.stderr_tail = self._receiver.stderr_tail.text()
        self._sync()
        self._watch.update(status=report.status, done=True)
        self.ready.set()
        self.done.set()

    @property
    def stderr_tail(self) -> TailBuffer:
        return self._receiver.stderr_tail
