"""``python -m runner run PATH``: the Sequence in a runner child process, through host_bridge.

This is the production path (the same runner, protocol and supervision a hub
uses); this process is the host. Input from stdin or --input, output to stdout
byte for byte, everything else rendered on stderr (render.Render). The first
SIGINT/SIGTERM is a graceful stop with keepalive allowed, a signal while a stop
is pending kills; after a keepalive the next one is a final stop (no keepalive).
A SEQUENCE_STOPPED (stop handlers done, or ``context.end()``) is answered with
KILL at once, as STH does, so the command does not wait for the stop deadline.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import anyio

from .options import RunOptions
from .render import Render, exit_code_of, exit_meaning
from .sources import open_source, read_chunks

POLL_S = 0.05


def run_child(opts: RunOptions) -> int:
    render = Render(opts.log_format, opts.color, opts.verbose)
    try:
        return anyio.run(_run, opts, render)
    except KeyboardInterrupt:  # before the signal handlers were in place
        render.exit(130, "interrupted while starting")
        return 130


def _stdout_gone() -> None:
    """stdout's reader went away (``| head``): drop the rest of the output quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


async def _run(opts: RunOptions, render: Render) -> int:
    from host_bridge import Bridge, ChannelClosed, InstanceNotRunning, SpawnError

    from ..protocol.lifecycle import State

    out: Any = sys.stdout.buffer if sys.stdout is not None else open(os.devnull, "wb")  # noqa: SIM115, ASYNC230 - fd 1 closed
    async with Bridge() as bridge:
        try:
            inst = await bridge.spawn(opts.path, args=opts.args, app_config=opts.config,
                                      input_content_type=opts.content_type, env=opts.env or None)
        except SpawnError as exc:
            render.note(str(exc))
            return 1
        events = inst.events()
        render.note(f"started {opts.path} (pid {inst.pid})", always=False)

        async def pump_output() -> None:
            broken = False
            async for chunk in inst.output():
                if broken:
                    continue
                try:
                    out.write(chunk)
                    out.flush()
                except (BrokenPipeError, ValueError):
                    broken = True
                    _stdout_gone()
                    inst.discard("output")

        async def pump_stdio(kind: str) -> None:
            stream = inst.stdout() if kind == "stdout" else inst.stderr()
            async for chunk in stream:
                render.stdio(kind, chunk)
            render.stdio_end(kind)

        async def pump_logs() -> None:
            async for record in inst.logs():
                render.log(record)

        async def pump_events() -> None:
            async for event in events:
                render.event(event.name, event.message)

        async def feed_input() -> None:
            if not await inst.wait_started():
                return
            source = None if opts.stdin_path == "-" and opts.input_path is None else opts.input_path
            fd = None if opts.stdin_path == "-" and opts.input_path is None else open_source(source)
            if fd == 0 and os.isatty(0):
                render.note("reading the input from the terminal; end it with Ctrl-D")
            try:
                async for chunk in read_chunks(fd):
                    await inst.write_input(chunk)
                await inst.end_input()
            except (ChannelClosed, InstanceNotRunning):
                pass  # the Sequence ended before its input did
            finally:
                if fd not in (None, 0):
                    os.close(fd)

        async def feed_stdin() -> None:
            if not await inst.wait_started():
                return
            fd = open_source(opts.stdin_path) if opts.stdin_path is not None else None
            try:
                async for chunk in read_chunks(fd):
                    await inst.write_stdin(chunk)
                await inst.end_stdin()
            except (ChannelClosed, InstanceNotRunning):
                pass
            finally:
                if fd not in (None, 0):
                    os.close(fd)

        async def send_events() -> None:
            if not await inst.wait_started():
                return
            for name, message in opts.events:
                try:
                    await inst.send_event(name, message)
                except InstanceNotRunning:
                    return

        async def watch_lifecycle() -> None:
            noted_keepalive: float | None = None
            noted_running = False
            seen_beats = 0
            unhealthy_streak = 0
            while not inst.done.is_set():
                if inst.state.lifecycle is State.STOPPED and not inst.kill_requested:
                    render.note("the Sequence stopped; killing the runner", always=False)
                    await inst.kill()
                beat = inst.heartbeat or {}
                if not noted_running and "loopLagMs" in (beat.get("stats") or {}):
                    # loopLagMs appears once the event loop answers the heartbeat probe, which is
                    # after run() was called (earlier heartbeats cover the Sequence's import)
                    noted_running = True
                    render.note("the Sequence is running", always=False)
                if inst.heartbeats != seen_beats:
                    seen_beats = inst.heartbeats
                    if beat.get("healthy", True):
                        if unhealthy_streak >= 2:
                            render.note("the Sequence reports itself healthy again")
                        unhealthy_streak = 0
                    else:
                        unhealthy_streak += 1
                        if unhealthy_streak == 2:  # one slow probe on a busy machine is not news
                            render.note("the Sequence reports itself unhealthy (health check or a blocked loop)")
                keepalive = inst.info.keepalive_ms
                if keepalive is not None and keepalive != noted_keepalive:
                    render.note(f"the Sequence asked to keep running (keepalive {keepalive:g} ms); "
                                "Ctrl-C again stops it for good")
                noted_keepalive = keepalive
                await anyio.sleep(POLL_S)

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    await _on_signal(inst, render, opts, signal.Signals(signum).name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signals)
            tg.start_soon(feed_input)
            tg.start_soon(feed_stdin)
            tg.start_soon(send_events)
            tg.start_soon(watch_lifecycle)
            async with anyio.create_task_group() as readers:
                readers.start_soon(pump_output)
                readers.start_soon(pump_stdio, "stdout")
                readers.start_soon(pump_stdio, "stderr")
                readers.start_soon(pump_logs)
                readers.start_soon(pump_events)
                code = await inst.wait()
            tg.cancel_scope.cancel()
        info = inst.info
        detail = None
        if code is None or not exit_meaning(code) or (opts.verbose and info.error):
            detail = info.error or info.exit_reason
            if code is None and info.process_output_tail:
                detail = f"{detail}\n" + "\n".join(info.process_output_tail)
        render.exit(code, detail)
        return exit_code_of(code)


async def _on_signal(inst: Any, render: Render, opts: RunOptions, name: str) -> None:
    if inst.done.is_set():
        return
    kept_alive = inst.stop_requested and inst.info.keepalive_ms is not None
    if inst.kill_requested or (inst.stop_requested and not kept_alive):
        render.note(f"{name}: killing the Sequence")
        await inst.kill()  # a second kill() sends SIGKILL to the runner's process group
    elif not inst.stop_requested:
        render.note(f"{name}: stopping the Sequence (stop handlers get {opts.stop_timeout_ms:g} ms; "
                    "again to kill)")
        await inst.stop(opts.stop_timeout_ms, can_call_keepalive=True)
    else:
        render.note(f"{name}: stopping the Sequence, no keepalive this time (again to kill)")
        await inst.stop(opts.stop_timeout_ms, can_call_keepalive=False)
