"""The task that runs one Instance: connect, handshake, serve, reap, report.

Supervision chain (every step bounded): STOP → KILL at the stop deadline unless
ALIVE, and the exit grace after SEQUENCE_STOPPED/COMPLETED/KILL (both deadlines
of the sans-IO Connection, fed by the link's timer) → SIGTERM to the runner's
process group → ``term_grace`` → SIGKILL (``Escalation``: one deadline, one task).
After the runner exits its process group is killed so the Sequence's children do
not outlive it, and the process is always reaped. A launched runner (a container:
host_bridge.external) is watched and signalled through its ExternalRunner instead
of a process. The Supervisor changes the Instance only through its methods.
"""

from __future__ import annotations

import hmac
import signal

import anyio
import anyio.abc

from runner.protocol import Ping, ProtocolError, Reject
from runner.protocol.connection import Connection

from .containment import Containment
from .escalation import Escalation
from .external import ExternalRunner, RunnerExit
from .instance import Instance
from .link import HandshakeFailed, Link, SocketStream, host_connection, read_ping
from .listeners import peer_text
from .process import TailBuffer, signal_group
from .report import Ending, build_report, internal_error_report

#: Seconds the reader may still need to reach end of file after the runner exited.
_EOF_AFTER_EXIT = 2.0
#: Seconds to wait for the kernel to reap a SIGKILLed process before giving up.
_REAP_BOUND = 10.0


async def reject_and_close(stream: SocketStream, conn: Connection, reason: str | None) -> None:
    """Write what is queued (plus REJECT ``reason`` if given) and close, bounded and shielded."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
        try:
            if reason is not None:
                conn.send(Reject(reason=reason), anyio.current_time())
            buffers = conn.data_to_send()
            if buffers:
                await stream.send_all(buffers)  # in order, as few sendmsg calls as the socket allows
        except Exception:  # noqa: BLE001, S110 - the peer may be gone already; closing is all that is left
            pass
        await stream.aclose()


def verify_ping(instance: Instance | None, ping: Ping) -> str | None:
    """The reason to refuse this PING, or None to accept it."""
    claimed = ping.instance_id
    if instance is None or claimed != instance.id:
        return f"unknown instance id {peer_text(claimed)}"
    if not hmac.compare_digest(ping.token.encode(), instance.token.encode()):
        return f"wrong token for instance {claimed}"
    return None


class Supervisor:
    def __init__(
        self,
        instance: Instance,
        process: anyio.abc.Process | None,
        stream: SocketStream | None,
        containment: Containment | None = None,
        *,
        launched: bool = False,
    ) -> None:
        self.inst = instance
        self.process = process
        self.containment = containment  # a spawned runner's descendants
        self.stream = stream  # socketpair end; None: the runner connects to a listener
        self.exited = anyio.Event()
        self.returncode: int | None = None
        self.failure: str | None = None
        self.connection_error: str | None = None
        self.output_tail = TailBuffer()
        self.link: Link | None = None
        self.conn: Connection | None = None
        self.attached: tuple[SocketStream, Connection, Ping] | None = None
        self._attached_event = anyio.Event()
        self._handshake_scope: anyio.CancelScope | None = None
        # a launched runner: its handle comes once started (attach_external); signals go through it
        self.external: ExternalRunner | None = None
        self.external_exit: RunnerExit | None = None
        self.notes: list[str] = []  # what went wrong talking to the external runner's runtime
        self._signals_out, self._signals_in = anyio.create_memory_object_stream[signal.Signals](8)
        self.escalation = Escalation(
            process.pid if process is not None else None, instance.options.term_grace, self.exited, self._hang_up,
            self._queue_signal if launched else None,
        )
        instance._supervised_by(
            self.escalation,
            process.pid if process is not None else None,
            containment.group if containment is not None else None,
        )

    def _hang_up(self) -> None:
        if self.link is not None:
            self.link.abort()

    # -- listener side -----------------------------------------------------------
    @property
    def awaiting_connection(self) -> bool:
        return self.stream is None and self.attached is None and not self.inst.done.is_set()

    def attach(self, stream: SocketStream, conn: Connection, ping: Ping) -> None:
        self.attached = (stream, conn, ping)
        self._attached_event.set()

    def attach_external(self, runner: ExternalRunner) -> None:
        """The launched runner's handle (before ``run`` starts)."""
        self.external = runner

    # -- main ----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                if self.process is not None:
                    tg.start_soon(self._watch_process, self.process)
                    tg.start_soon(self._pump_output, self.process)
                    tg.start_soon(self.escalation.run)
                elif self.external is not None:
                    tg.start_soon(self._watch_external, self.external)
                    tg.start_soon(self._deliver_signals, self.external)
                    tg.start_soon(self.escalation.run)
                await self._connect()
                if self.link is not None:
                    await self.link.run()
                self.inst._connection_closed()
                await self._await_exit()
                tg.cancel_scope.cancel()
        except Exception as exc:  # noqa: BLE001 - one Instance must never take the bridge down
            self.fail(f"host_bridge internal error: {exc!r}")
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()

    def fail(self, text: str) -> None:
        if self.failure is None:
            self.failure = text

    async def _connect(self) -> None:
        timeout = self.inst.options.handshake_timeout
        with anyio.move_on_after(timeout) as scope:
            self._handshake_scope = scope
            if self.stream is not None:
                await self._handshake(self.stream)
            else:
                await self._attached_event.wait()
                assert self.attached is not None
                self._accept(*self.attached)
        self._handshake_scope = None
        if self.link is None:
            if self.exited.is_set():
                self.fail("the runner exited before completing the handshake")
            elif scope.cancelled_caught:
                what = "PING from the runner" if self.stream is not None else "runner connected"
                self.fail(f"no {what} within {timeout:g} s (handshake timeout)")
            if self.stream is not None and self.conn is not None:
                await reject_and_close(self.stream, self.conn, None)
            self.inst._handshake_failed()

    async def _handshake(self, stream: SocketStream) -> None:
        conn = self.conn = host_connection(self.inst.options)
        try:
            ping = await read_ping(stream, conn)
        except ProtocolError as err:
            self.fail(f"handshake failed: {type(err).__name__}: {err}")
            await reject_and_close(stream, conn, None)  # a REJECT may already be queued
            return
        except HandshakeFailed as err:
            self.fail(str(err))
            await reject_and_close(stream, conn, None)
            return
        reason = verify_ping(self.inst, ping)
        if reason is not None:
            self.fail(f"refused the runner: {reason}")
            await reject_and_close(stream, conn, reason)
            return
        self._accept(stream, conn, ping)

    def _accept(self, stream: SocketStream, conn: Connection, ping: Ping) -> None:
        self.conn = conn
        if self.containment is not None:
            self.containment.note_memory_cgroup()
        self.link = self.inst._accept_runner(stream, conn, ping, self._on_link_failure)

    def _on_link_failure(self, text: str, protocol_error: bool) -> None:
        if protocol_error:
            self.fail(text)
        elif self.connection_error is None:
            self.connection_error = text

    # -- process -----------------------------------------------------------------
    async def _watch_process(self, process: anyio.abc.Process) -> None:
        self.returncode = await process.wait()
        signal_group(process.pid, signal.SIGKILL)  # the Sequence's children must not outlive it
        await self._runner_gone()

    async def _runner_gone(self) -> None:
        self.exited.set()
        self.escalation.wake()
        if self._handshake_scope is not None:
            self._handshake_scope.cancel()
        if self.link is not None:
            with anyio.move_on_after(_EOF_AFTER_EXIT):
                await self.link.read_done.wait()
            self.link.abort()

    # -- a launched runner -------------------------------------------------------------
    async def _watch_external(self, runner: ExternalRunner) -> None:
        try:
            self.external_exit = await runner.wait()
        except Exception as exc:  # noqa: BLE001 - its runtime failed us: the runner's end is unknown
            self.external_exit = RunnerExit(None, detail=f"waiting for the runner failed: {exc!r}")
        await self._runner_gone()

    def _queue_signal(self, sig: signal.Signals) -> None:
        try:
            self._signals_out.send_nowait(sig)
        except anyio.WouldBlock:  # escalation sends at most a few; more would be a bug worth seeing
            self.notes.append(f"{sig.name} not delivered: too many signals queued")

    async def _deliver_signals(self, runner: ExternalRunner) -> None:
        async for sig in self._signals_in:
            await self._deliver(runner, sig)

    async def _deliver(self, runner: ExternalRunner, sig: signal.Signals) -> None:
        try:
            await runner.signal(sig)
        except Exception as exc:  # noqa: BLE001 - recorded in the report; escalation goes on
            self.notes.append(f"could not deliver {sig.name} to the runner: {exc}")

    async def _end_external(self, runner: ExternalRunner) -> None:
        """At the end, a launched runner that still runs gets SIGKILL, and its end is awaited (bounded)."""
        if self.external_exit is None:
            self.escalation.kill_now()
        while True:
            try:
                sig = self._signals_in.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            await self._deliver(runner, sig)
        if self.external_exit is None:
            with anyio.move_on_after(_REAP_BOUND):
                await self._watch_external(runner)

    async def _pump_output(self, process: anyio.abc.Process) -> None:
        if process.stdout is None:
            return
        try:
            async for chunk in process.stdout:
                self.output_tail.feed(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def _await_exit(self) -> None:
        """The connection is over: the runner has its grace to exit, then the escalation's signals."""
        if self.process is None and self.external is None:
            return
        options = self.inst.options
        grace = options.protocol_error_grace if self.failure else options.exit_grace
        self.escalation.terminate_at(anyio.current_time() + grace)
        with anyio.move_on_after(grace + options.term_grace + _REAP_BOUND):
            await self.exited.wait()

    # -- the report ------------------------------------------------------------------
    async def _finish(self) -> None:
        process = self.process
        if process is not None:
            if self.returncode is None:  # cancelled (bridge shut down) or not reaped yet
                self.escalation.kill_now()
                with anyio.move_on_after(_REAP_BOUND):
                    self.returncode = await process.wait()
            signal_group(process.pid, signal.SIGKILL)
            with anyio.move_on_after(1.0):
                await process.aclose()
        if self.external is not None:
            await self._end_external(self.external)
        cleanup = await self.containment.end() if self.containment is not None else None
        lifecycle = self.conn.lifecycle if self.conn is not None else None
        ending = Ending(
            spawned=process is not None,
            returncode=self.returncode,
            signalled=self.escalation.signalled,
            stop_requested=self.inst.stop_requested or (lifecycle is not None and lifecycle.stop_requested),
            lifecycle_exit_code=lifecycle.final_exit_code if lifecycle is not None else None,
            connected=self.link is not None,
            failure=self.failure,
            connection_error=self.connection_error,
            output_tail=self.output_tail.text(),
            host_signals=tuple(int(sig) for sig in self.escalation.sent),
            cleanup=cleanup,
            external=self.external_exit,
            notes=tuple(self.notes),
        )
        try:
            report = build_report(ending, self.inst.info, self.inst.stderr_tail.text())
        except Exception as exc:  # noqa: BLE001 - the Instance must end, and the bridge must not fall
            report = internal_error_report(f"host_bridge internal error while reporting: {exc!r}")
        self.inst._finish(report)
