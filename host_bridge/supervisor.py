"""The task that runs one Instance: connect, handshake, serve, reap, report.

Supervision chain (every step bounded): STOP → KILL at the stop deadline unless
ALIVE (the Connection queues it from the link's timer) → the exit grace after
SEQUENCE_STOPPED/COMPLETED/KILL → SIGTERM to the runner's process group →
``term_grace`` → SIGKILL. After the runner exits its process group is killed so
the Sequence's children do not outlive it, and the process is always reaped.
"""

from __future__ import annotations

import hmac
import signal
from datetime import datetime, timezone
from typing import Any

import anyio
import anyio.abc

from runner.protocol import Code, Connection, LocalProtocolError, ProtocolError, State, Status

from .info import describe_exit, exit_code_for_signal, final_status
from .instance import Instance
from .link import HandshakeFailed, Link, SocketStream, read_ping, send_buffers
from .process import TailBuffer, signal_group

#: Seconds the reader may still need to reach end of file after the runner exited.
_EOF_AFTER_EXIT = 2.0
#: Seconds to wait for the kernel to reap a SIGKILLed process before giving up.
_REAP_BOUND = 10.0


async def reject_and_close(stream: SocketStream, conn: Connection, reason: str | None) -> None:
    """Write what is queued (plus REJECT ``reason`` if given) and close, bounded and shielded."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
        try:
            if reason is not None:
                conn.reject(reason, anyio.current_time())
            buffers = conn.data_to_send()
            if buffers:
                await send_buffers(stream, buffers)
        except Exception:  # noqa: BLE001, S110 - the peer may be gone already; closing is all that is left
            pass
        await stream.aclose()


def verify_ping(instance: Instance | None, ping: dict[str, Any]) -> str | None:
    """The reason to refuse this PING, or None to accept it."""
    claimed = ping.get("instanceId")
    if instance is None or claimed != instance.id:
        return f"unknown instance id {claimed!r}"
    if not hmac.compare_digest(str(ping.get("token", "")).encode(), instance.token.encode()):
        return f"wrong token for instance {claimed}"
    return None


class Supervisor:
    def __init__(
        self,
        instance: Instance,
        process: anyio.abc.Process | None,
        stream: SocketStream | None,
    ) -> None:
        self.inst = instance
        self.process = process
        self.stream = stream  # socketpair end; None: the runner connects to a listener
        self.exited = anyio.Event()
        self.returncode: int | None = None
        self.signalled = False
        self.failure: str | None = None
        self.connection_error: str | None = None
        self.output_tail = TailBuffer()
        self.attached: tuple[SocketStream, Connection, dict[str, Any]] | None = None
        self._attached_event = anyio.Event()
        self._handshake_scope: anyio.CancelScope | None = None
        self._escalating = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._stop_generation = 0
        instance.escalate_now = self.escalate
        instance.stop_timer = self.start_stop_timer

    # -- listener side -----------------------------------------------------------
    @property
    def awaiting_connection(self) -> bool:
        return self.stream is None and self.attached is None and not self.inst.done.is_set()

    def attach(self, stream: SocketStream, conn: Connection, ping: dict[str, Any]) -> None:
        self.attached = (stream, conn, ping)
        self._attached_event.set()

    # -- main ----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.process is not None:
                    tg.start_soon(self._watch_process, self.process)
                    tg.start_soon(self._pump_output, self.process)
                if self.inst.status is Status.INITIALIZING:
                    self.inst.status = Status.STARTING
                await self._connect()
                if self.inst.link is not None:
                    await self.inst.link.run()
                self.inst._close_streams()
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
        inst = self.inst
        timeout = inst.options.handshake_timeout
        with anyio.move_on_after(timeout) as scope:
            self._handshake_scope = scope
            if self.stream is not None:
                await self._handshake(self.stream)
            else:
                await self._attached_event.wait()
                assert self.attached is not None
                self._accept(*self.attached)
        self._handshake_scope = None
        if inst.link is None:
            if self.exited.is_set():
                self.fail("the runner exited before completing the handshake")
            elif scope.cancelled_caught:
                what = "PING from the runner" if self.stream is not None else "runner connected"
                self.fail(f"no {what} within {timeout:g} s (handshake timeout)")
            if self.stream is not None:
                await reject_and_close(self.stream, inst.conn, None)
            inst.ready.set()

    async def _handshake(self, stream: SocketStream) -> None:
        conn = self.inst.conn
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

    def _accept(self, stream: SocketStream, conn: Connection, ping: dict[str, Any]) -> None:
        inst = self.inst
        inst.conn = conn
        inst.info.runner = {k: v for k, v in ping.items() if k != "token"}
        if inst.info.pid is None and isinstance(ping.get("pid"), int):
            inst.info.pid = ping["pid"]
        fields: dict[str, Any] = {"capabilities": []}
        if inst.options.app_config is not None:
            fields["appConfig"] = inst.options.app_config
        if inst.options.args is not None:
            fields["args"] = list(inst.options.args)
        conn.accept(anyio.current_time(), **fields)
        inst.link = Link(stream, conn, inst._on_events, self._on_link_failure)
        inst.connected_at = anyio.current_time()
        inst.info.started = datetime.now(timezone.utc)
        if inst.status is Status.STARTING:
            inst.status = Status.RUNNING
        inst.connected.set()
        inst.ready.set()

    def _on_link_failure(self, text: str, protocol_error: bool) -> None:
        if protocol_error:
            self.fail(text)
        elif self.connection_error is None:
            self.connection_error = text

    # -- process -----------------------------------------------------------------
    async def _watch_process(self, process: anyio.abc.Process) -> None:
        self.returncode = await process.wait()
        signal_group(process.pid, signal.SIGKILL)  # the Sequence's children must not outlive it
        self.exited.set()
        if self._handshake_scope is not None:
            self._handshake_scope.cancel()
        link = self.inst.link
        if link is not None:
            with anyio.move_on_after(_EOF_AFTER_EXIT):
                await link.read_done.wait()
            link.abort()

    async def _pump_output(self, process: anyio.abc.Process) -> None:
        if process.stdout is None:
            return
        try:
            async for chunk in process.stdout:
                self.output_tail.feed(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def _await_exit(self) -> None:
        if self.process is None:
            return
        options = self.inst.options
        grace = options.protocol_error_grace if self.failure else options.exit_grace
        with anyio.move_on_after(grace):
            await self.exited.wait()
        if not self.exited.is_set():
            self.escalate(immediate=False)
            with anyio.move_on_after(options.term_grace + _REAP_BOUND):
                await self.exited.wait()

    def escalate(self, immediate: bool) -> None:
        """Signal the runner: SIGTERM then SIGKILL after term_grace, or SIGKILL now."""
        if self.process is None:
            if self.inst.link is not None:
                self.inst.link.abort()  # a connected-in runner: all the host can do is hang up
            return
        if self.exited.is_set():
            return
        if immediate or self._tg is None:
            self.signalled = True
            signal_group(self.process.pid, signal.SIGKILL)
            return
        if not self._escalating:
            self._escalating = True
            self._tg.start_soon(self._term_then_kill, self.process.pid)

    async def _term_then_kill(self, pid: int) -> None:
        self.signalled = True
        signal_group(pid, signal.SIGTERM)
        with anyio.move_on_after(self.inst.options.term_grace):
            await self.exited.wait()
        if not self.exited.is_set():
            signal_group(pid, signal.SIGKILL)

    def start_stop_timer(self, timeout: float) -> None:
        """KILL at the stop timeout even when SEQUENCE_STOPPED came first.

        The Connection's lifecycle replaces the pending STOP deadline with the exit
        grace when SEQUENCE_STOPPED arrives, which would delay KILL by the whole
        exit grace; docs/protocol.md §5 (and STH) send KILL at the stop timeout.
        """
        self._stop_generation += 1
        if self._tg is not None:
            self._tg.start_soon(self._kill_after_stop, self._stop_generation, timeout)

    async def _kill_after_stop(self, generation: int, timeout: float) -> None:
        await anyio.sleep(timeout)
        inst = self.inst
        if generation != self._stop_generation or inst.closed or inst.link is None:
            return
        if inst.conn.state is State.STOPPED:
            try:
                inst.conn.send_message(Code.KILL, {}, anyio.current_time())
            except LocalProtocolError:
                return
            inst.link.flush()

    # -- the report ------------------------------------------------------------------
    async def _finish(self) -> None:
        inst, process = self.inst, self.process
        if process is not None:
            if self.returncode is None:  # cancelled (bridge shut down) or not reaped yet
                self.signalled = True
                signal_group(process.pid, signal.SIGKILL)
                with anyio.move_on_after(_REAP_BOUND):
                    self.returncode = await process.wait()
            signal_group(process.pid, signal.SIGKILL)
            with anyio.move_on_after(1.0):
                await process.aclose()
        if inst.link is not None:
            inst.link.abort()
        inst._close_streams()
        self._report()
        inst.ready.set()
        inst.done.set()

    def _report(self) -> None:
        inst, info = self.inst, self.inst.info
        lifecycle = inst.conn.lifecycle
        stop_requested = inst.stop_requested or lifecycle.stop_requested
        sig: int | None = None
        code: int | None
        if self.process is not None:
            rc = self.returncode
            if rc is None:
                code = None
            elif rc < 0:
                sig = -rc
                code = exit_code_for_signal(sig, requested=self.signalled, stop_requested=stop_requested)
            else:
                code = rc
        else:
            code = info.reported_exit_code if info.reported_exit_code is not None else lifecycle.final_exit_code
            if code is None and inst.link is not None:
                self.fail("the runner closed the connection without EXITING")
        info.exit_code = code
        info.exit_signal = sig
        info.ended = datetime.now(timezone.utc)
        info.stderr_tail = inst.stderr_tail.text()
        info.process_output_tail = self.output_tail.text()
        status = final_status(code, self.failure is not None)
        inst.status = status
        unrequested_signal = sig is not None and not self.signalled
        if status is Status.ERRORED or unrequested_signal:
            parts = [p for p in (self.failure, self.connection_error) if p]
            if self.process is not None and (code is not None or sig is not None):
                parts.append(describe_exit(code, sig, self.signalled))
            if info.runner_error:
                parts.append(f"Sequence error: {info.runner_error.get('message')}")
            tail = info.process_output_tail[-5:] or info.stderr_tail[-5:]
            if tail:
                parts.append("last output: " + " | ".join(tail))
            info.error = "; ".join(parts)
