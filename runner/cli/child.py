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

import gc
import os
import signal
import stat
import sys
from typing import Any

import anyio

from host_bridge import (
    Bridge,
    ChannelClosed,
    ChannelStats,
    Instance,
    InstanceEnded,
    InstanceNotRunning,
    SpawnError,
    State,
    Status,
)

from .events_in import forward_events
from .options import RunOptions
from .output import StdoutWriter
from .render import FAILED, Render, exit_code_of, exit_meaning
from .sources import can_send_file, open_source, read_chunks
from .stats import RunTally, Sample, StatsReporter, is_text_like

STDOUT_PIPE_SIZE = 1 << 20
#: Output bytes the runner may have in flight to this process. host_bridge's default (1 MiB) is
#: sized for a hub holding many Instances; this process holds one, and with 1 MiB frames a 1 MiB
#: window let one frame through at a time: the runner waited for every chunk to be read and
#: credited before it sent the next. 8 MiB keeps both processes busy (issue 13 part 4).
OUTPUT_WINDOW = 8 << 20
#: glibc malloc settings for the runner this command starts (unless set already): a bulk run
#: allocates a 1 MiB payload per input frame, and with glibc's defaults each one came from fresh
#: pages (a fifth of the runner's reader thread went to page faults). Payloads up to 8 MiB come
#: from the heap and up to 64 MiB of freed heap is kept for the next ones: the runner's RSS may
#: stay up to that much higher after a burst. Other C libraries ignore these variables; a warm
#: (forked) runner keeps its template's settings.
RUNNER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(8 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
#: Allocations of container objects between two young-generation collections during the run
#: (CPython's default is 700): a bulk run allocates a few per chunk, none of them cyclic garbage.
GC_YOUNG_THRESHOLD = 10_000


def run_child(opts: RunOptions) -> int:
    render = Render(opts.log_format, opts.color, opts.verbose)
    tally = RunTally(input_type=opts.content_type)
    try:
        return anyio.run(_run, opts, render, tally)
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


def _widen_stdout_pipe() -> None:
    """A pipe on stdout gets 1 MiB of buffer (Linux F_SETPIPE_SZ; the default is 64 KiB): the
    blocking writes of output wake the reader 16x less often. Only the pipe's capacity changes;
    a system that refuses (pipe-max-size, the user's pipe quota) keeps its default."""
    try:
        if not stat.S_ISFIFO(os.fstat(1).st_mode):
            return
        import fcntl

        fcntl.fcntl(1, getattr(fcntl, "F_SETPIPE_SZ", 1031), STDOUT_PIPE_SIZE)
    except OSError:
        pass


async def _run(opts: RunOptions, render: Render, tally: RunTally) -> int:
    async with Bridge() as bridge:
        env = opts.sequence_env()
        env.update({k: v for k, v in RUNNER_MALLOC_ENV.items() if k not in os.environ and k not in env})
        try:
            inst = await bridge.spawn(opts.path, args=opts.args, app_config=opts.config,
                                      input_content_type=opts.content_type, env=env,
                                      window=OUTPUT_WINDOW)
        except SpawnError as exc:
            render.note(str(exc))
            return FAILED
        _settle_gc()
        run = ChildRun(opts, render, inst, tally)
        reporter = StatsReporter(run.sample, render.stats, opts.stats_interval)
        reporter.start()
        render.note(f"started {opts.path} (pid {inst.pid})", always=False)
        try:
            code = await run.run()
        finally:
            reporter.stop()
        return run.finish(code)


def _settle_gc() -> None:
    """What this process imported and built to get here lives until it exits: frozen, the
    collector's passes during the run skip it, and they come less often (GC_YOUNG_THRESHOLD)."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class ChildRun:
    """The tasks that connect one runner child to this terminal, and how the run ended."""

    def __init__(self, opts: RunOptions, render: Render, inst: Instance, tally: RunTally) -> None:
        self.opts = opts
        self.render = render
        self.inst = inst
        self.tally = tally
        self.events = inst.events()  # subscribed now: no event is missed before its pump starts
        self.out: Any = sys.stdout.buffer if sys.stdout is not None else open(os.devnull, "wb")  # noqa: SIM115 - fd 1 closed

    async def run(self) -> int | None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.on_signals)
            tg.start_soon(self.feed_input)
            tg.start_soon(self.feed_stdin)
            tg.start_soon(self.send_events)
            for source in self.opts.event_sources:
                tg.start_soon(self.forward_events, source)
            tg.start_soon(self.watch_state)
            tg.start_soon(self.watch_health)
            if self.opts.stats_interval is not None and self.opts.stats_interval < 1:
                tg.start_soon(self.inst.set_monitoring_rate, 1 / self.opts.stats_interval)
            async with anyio.create_task_group() as readers:
                readers.start_soon(self.pump_output)
                readers.start_soon(self.pump_stdio, "stdout")
                readers.start_soon(self.pump_stdio, "stderr")
                readers.start_soon(self.pump_logs)
                readers.start_soon(self.pump_events)
                code = await self.inst.wait()
            tg.cancel_scope.cancel()
        return code

    def finish(self, code: int | None) -> int:
        """Render how the Instance ended; the status this command exits with."""
        info = self.inst.info
        if code == 0 and self.inst.status is Status.ERRORED:
            # host_bridge's verdict wins over a bare 0: e.g. a runner that exited 0 without EXITING
            # (os._exit(0) in the Sequence) is no clean completion, its output may be cut short
            code = FAILED
        detail = None
        if code is None or code == FAILED or not exit_meaning(code) or (self.opts.verbose and info.error):
            detail = info.error or info.exit_reason
            if code is None and info.process_output_tail:
                detail = f"{detail}\n" + "\n".join(info.process_output_tail)
        self.tally.input_type = self.tally.input_type or info.input_content_type
        self.tally.output_type = info.output_content_type
        self.render.exit(code, detail, self.tally)
        return exit_code_of(code)

    def sample(self) -> Sample | None:
        """The latest heartbeat as live stats (read from the stats thread or a signal handler)."""
        beat = self.inst.stats
        if beat is None:
            return None
        none = ChannelStats(0, 0)
        return Sample(at=beat.received_at, rss=beat.rss, cpu=beat.cpu, loop_lag_ms=beat.loop_lag_ms,
                      in_items=beat.channels.get("in", none).items, out_items=beat.channels.get("out", none).items)

    # -- from the Sequence
    async def pump_output(self) -> None:
        try:
            self.out.flush()
            fd = self.out.fileno()
        except (OSError, ValueError):  # stdout closed: nothing can be written
            fd = -1
        writer = StdoutWriter(fd, _stdout_gone)
        first = True
        try:
            async for chunk in self.inst.output():
                if first:
                    first = False
                    self.tally.output.count_lines = is_text_like(self.inst.info.output_content_type or "text/plain")
                    _widen_stdout_pipe()
                    if not self.tally.output.count_lines and fd >= 0:
                        self._splice_output(fd, writer)
                self.tally.output.add(chunk)
                if writer.broken:
                    self.inst.discard("output")
                    continue
                await writer.write(chunk)
        finally:
            with anyio.CancelScope(shield=True):
                await writer.close()

    def _splice_output(self, fd: int, writer: StdoutWriter) -> None:
        """Binary output into a pipe: frames go from the runner's socket into it (os.splice) when
        nothing is queued ahead of them; lines are not counted, so no byte needs to be seen."""

        def gone() -> None:
            writer.broken = True
            _stdout_gone()
            self.inst.discard("output")

        self.inst.splice_output(fd, writer.idle, self.tally.output.add_count, gone)

    async def pump_stdio(self, kind: str) -> None:
        stream = self.inst.stdout() if kind == "stdout" else self.inst.stderr()
        async for chunk in stream:
            self.render.stdio(kind, chunk)
        self.render.stdio_end(kind)

    async def pump_logs(self) -> None:
        async for record in self.inst.logs():
            self.render.log(record)

    async def pump_events(self) -> None:
        async for event in self.events:
            self.render.event(event.name, event.message)

    # -- to the Sequence
    async def feed_input(self) -> None:
        if not await self.inst.wait_started():
            return
        opts = self.opts
        if opts.content_type is not None:
            self.tally.input.count_lines = is_text_like(opts.content_type)
        fd = None if opts.stdin_path == "-" and opts.input_path is None else open_source(opts.input_path)
        if fd == 0 and os.isatty(0):
            self.render.note("reading the input from the terminal; end it with Ctrl-D")
        try:
            if fd is not None and not self.tally.input.count_lines and can_send_file(fd):
                self.tally.input.add_count(await self.inst.write_input_file(fd))
            async for chunk in read_chunks(fd):  # what a file without a size has (/proc), or a pipe
                self.tally.input.add(chunk)
                await self.inst.write_input(chunk)
            await self.inst.end_input()
        except (ChannelClosed, InstanceNotRunning):
            pass  # the Sequence ended before its input did
        finally:
            if fd not in (None, 0):
                os.close(fd)

    async def feed_stdin(self) -> None:
        if not await self.inst.wait_started():
            return
        fd = open_source(self.opts.stdin_path) if self.opts.stdin_path is not None else None
        try:
            async for chunk in read_chunks(fd):
                await self.inst.write_stdin(chunk)
            await self.inst.end_stdin()
        except (ChannelClosed, InstanceNotRunning):
            pass
        finally:
            if fd not in (None, 0):
                os.close(fd)

    async def send_events(self) -> None:
        if not self.opts.events:
            return
        try:
            await self.inst.wait_running()  # its context.on handlers are registered by now
            for name, message in self.opts.events:
                await self.inst.send_event(name, message)
        except (InstanceEnded, InstanceNotRunning):
            return  # it ended first: nobody to send them to

    async def forward_events(self, source: str) -> None:
        try:
            await self.inst.wait_running()
            await forward_events(source, self.inst.send_event, self.render.note)
        except (InstanceEnded, InstanceNotRunning):
            pass  # the Sequence ended; the rest of the source has nobody to go to

    # -- lifecycle (host_bridge's state changes and heartbeats: nothing here polls)
    async def watch_state(self) -> None:
        noted_running = False
        noted_keepalive: float | None = None
        async for state in self.inst.state_changes():
            if state.lifecycle is State.STOPPED and not self.inst.kill_requested:
                self.render.note("the Sequence stopped; killing the runner", always=False)
                await self.inst.kill()
            if state.running and not noted_running and state.lifecycle is State.RUNNING:
                noted_running = True
                self.render.note("the Sequence is running", always=False)
            if state.keepalive_ms is not None and state.keepalive_ms != noted_keepalive:
                self.render.note(f"the Sequence asked to keep running (keepalive {state.keepalive_ms:g} ms); "
                                 "Ctrl-C again stops it for good")
            noted_keepalive = state.keepalive_ms

    async def watch_health(self) -> None:
        health = HealthNotes(self.render)
        async for beat in self.inst.heartbeat_updates():
            if beat.loop_lag_ms is None:
                continue  # no verdict yet: the Sequence is still loading (stats.starting)
            health.update(beat.healthy)

    async def on_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                await self.on_signal(signal.Signals(signum).name)

    async def on_signal(self, name: str) -> None:
        inst, render, timeout = self.inst, self.render, self.opts.stop_timeout_ms
        if inst.done.is_set():
            return
        kept_alive = inst.stop_requested and inst.state.keepalive_ms is not None
        if inst.kill_requested or (inst.stop_requested and not kept_alive):
            render.note(f"{name}: killing the Sequence")
            await inst.kill()  # a second kill() sends SIGKILL to the runner's process group
        elif not inst.stop_requested:
            render.note(f"{name}: stopping the Sequence (stop handlers get {timeout:g} ms; again to kill)")
            await inst.stop(timeout, can_call_keepalive=True)
        else:
            render.note(f"{name}: stopping the Sequence, no keepalive this time (again to kill)")
            await inst.stop(timeout, can_call_keepalive=False)


class HealthNotes:
    """Says when the Sequence turns unhealthy (two heartbeats in a row: one slow probe on a busy
    machine is not news) and when it is healthy again."""

    def __init__(self, render: Render) -> None:
        self.render = render
        self.unhealthy_streak = 0

    def update(self, healthy: bool) -> None:
        """One more heartbeat."""
        if healthy:
            if self.unhealthy_streak >= 2:
                self.render.note("the Sequence reports itself healthy again")
            self.unhealthy_streak = 0
            return
        self.unhealthy_streak += 1
        if self.unhealthy_streak == 2:
            self.render.note("the Sequence reports itself unhealthy (health check or a blocked loop)")
