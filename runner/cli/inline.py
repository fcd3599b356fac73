"""``python -m runner run --inline PATH``: the Sequence in this process, for debuggers.

No child process and no protocol: the Sequence is loaded here and its
AppContext talks to an :class:`InlineBackend` that plays both the runner and
the host of the child path, with the same observable behaviour:

* output → stdout (the real fd 1, saved before anything else); ``print()``
  and ``sys.stderr`` of the Sequence → stderr as ``[stdout] ``/``[stderr] ``
  lines, written through at once (so pdb prompts appear); fd 1 itself is
  pointed at stderr so C code and child processes cannot corrupt the output;
* ``context.emit`` → ``[event NAME] message``; ``context.logger`` →
  ``[log LEVEL] ...``; ``--event`` calls the ``context.on`` callbacks;
* SIGINT/SIGTERM: stop handlers with keepalive allowed, under --stop-timeout
  (the runner's StopPolicy; a deadline thread, so a Sequence blocking the loop still ends); a signal while
  a stop is pending kills (kill handlers, 100 ms); after a keepalive the next
  signal is a final stop. ``context.end()``/``destroy()`` end the run like the
  host's KILL after SEQUENCE_STOPPED does;
* exit codes 0/21/22/23/137/138 as the runner gives them;
* ``breakpoint()`` opens pdb on the terminal (/dev/tty) unless PYTHONBREAKPOINT
  is set.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..deadline_thread import DeadlineThread
from ..protocol import ExitCode
from ..protocol.stop import KILL_HANDLER_BUDGET, KeepAlive, StopPolicy, exit_delay_ms
from .events_in import forward_events
from .options import RunOptions
from .render import Render
from .sources import open_source, read_chunks
from .stats import ProcessSampler, RunTally, StatsReporter, count_chunks, count_items


class PrefixedText(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of an inline Sequence: text straight to the renderer."""

    def __init__(self, render: Render, kind: str) -> None:
        super().__init__()
        self._render = render
        self._kind = kind

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._render.stdio(self._kind, text.encode("utf-8", "backslashreplace"))
        return len(text)

    def fileno(self) -> int:
        return 2  # fd 1 points at stderr too; faulthandler and friends write there

    def isatty(self) -> bool:
        return False


class RenderLogHandler(logging.Handler):
    def __init__(self, render: Render) -> None:
        super().__init__()
        self._render = render

    def emit(self, record: logging.LogRecord) -> None:
        from ..logs import level_name

        try:
            entry: dict[str, Any] = {"ts": int(record.created * 1000), "level": level_name(record.levelno),
                                     "from": record.name, "msg": record.getMessage()}
            if record.exc_info and record.exc_info[0] is not None:
                entry["exc"] = "".join(traceback.format_exception(*record.exc_info))
        except Exception:  # noqa: BLE001 - a broken record must not break the Sequence
            self.handleError(record)
            return
        self._render.log(entry)


#: A package this process unpacked: removed on every way out (also ``_hard_exit``).
_unpacked: list[Any] = []


def _remove_unpacked() -> None:
    from ..sequence.archive import remove_extraction

    while _unpacked:
        remove_extraction(_unpacked.pop())


def _extract_dir(path: str) -> str | None:
    from pathlib import Path

    from ..sequence import archive

    if not archive.is_archive(Path(path)):
        return None
    target = archive.extraction_dir()
    _unpacked.append(target)
    archive.prepare_extraction_dir(target)
    return str(target)


def _hard_exit(code: int) -> None:
    _remove_unpacked()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


def _call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` on the loop soon, from the deadline thread, a signal handler or a Sequence's thread.

    Not runner.bridge.LoopBridge (the runner process's one way into its loop): that one serves the
    runner's anyio task group, which an inline run has not (asyncio.run, no Runtime), and the two
    hops here are plain callbacks. The rule is the same: ``call_soon_threadsafe`` only (it also
    wakes the selector, and is safe from a signal handler that interrupted the loop's own thread),
    never wait for the loop (the Sequence may block it), and nothing once the loop is closed (the
    run is over: a late signal or ``context.end()`` has nothing left to stop)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is closed
        pass


class InlineBackend:
    """ContextBackend of an inline run, and the host's decisions too.

    Stops follow the runner's StopPolicy (runner/protocol/stop.py): the same deadline,
    keepalive and exit-code rules; a DeadlineThread keeps the deadline while the
    Sequence may block the loop."""

    def __init__(self, render: Render, opts: RunOptions) -> None:
        self.render = render
        self.opts = opts
        self.context: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.finished: asyncio.Future[int] | None = None
        self.kill_requested = False
        self._policy = StopPolicy()
        self._lock = threading.RLock()  # RLock: a signal handler may interrupt its holder
        self._stop_pending = False  # set first thing by a signal: a second one kills
        self._clock = DeadlineThread(self._next_deadline, self._deadline_passed, "inline-stop-deadline")

    # -- ContextBackend
    def emit(self, event_name: str, message: Any) -> None:
        self.render.event(str(event_name), message)

    def keep_alive(self, ms: float) -> None:
        with self._lock:
            verdict = self._policy.keep_alive()
            if verdict is KeepAlive.SEND:
                self._stop_pending = False
        if verdict is KeepAlive.SEND:
            self.render.note(f"the Sequence asked to keep running (keepalive {ms:g} ms); "
                             "Ctrl-C again stops it for good")

    def end(self) -> None:
        self._sequence_stopped(None)

    def destroy(self, error: BaseException | None) -> None:
        self._sequence_stopped(error)

    def stop_time_remaining_ms(self) -> float | None:
        with self._lock:
            return self._policy.remaining_ms(time.monotonic())

    # -- lifecycle
    def _sequence_stopped(self, error: BaseException | None) -> None:
        """SEQUENCE_STOPPED: the host answers with KILL."""
        if error is not None:
            self.render.note(f"the Sequence stopped with an error: {type(error).__name__}: {error}")
        self.kill("the Sequence stopped")

    def finish(self, code: int) -> None:
        if self.loop is None or self.finished is None:
            return
        fut = self.finished

        def set_result() -> None:
            if not fut.done():
                fut.set_result(code)

        _call_on_loop(self.loop, set_result)

    def kill(self, reason: str, *, hard: bool = False) -> None:
        """KILL: kill handlers (bounded), then end with 137, or 138 after a stop."""
        self.kill_requested = True
        code = self._policy.kill_exit_code()
        self.render.note(f"{reason}; ending with {code}", always=False)
        if self.context is not None:
            self.context.run_kill_handlers(KILL_HANDLER_BUDGET)
        if hard:  # the loop may be blocked by the Sequence: nothing but exiting is certain
            self.render.exit(code)
            _hard_exit(code)
        self.finish(code)

    def begin_stop(self, timeout_ms: float, can_keepalive: bool) -> int:
        """Any thread: a stop is pending from now on (its id); the deadline thread keeps its deadline."""
        with self._lock:
            stop_id = self._policy.begin(timeout_ms, can_keepalive, time.monotonic())
        self._clock.poke()
        return stop_id

    def run_stop_handlers(self, stop_id: int, timeout_ms: float, can_keepalive: bool) -> None:
        """On the loop: run the stop handlers of stop ``stop_id``."""
        assert self.context is not None

        async def handlers() -> None:
            error = await self.context.run_stop_handlers(timeout_ms, can_keepalive)
            with self._lock:
                ends_the_stop = self._policy.handlers_finished(stop_id)
            if ends_the_stop:
                self._sequence_stopped(error)

        asyncio.ensure_future(handlers())

    def _next_deadline(self) -> float | None:
        with self._lock:
            return self._policy.next_deadline()

    def _deadline_passed(self, now: float) -> None:
        with self._lock:
            timeout_ms = self._policy.expire(now)
        if timeout_ms is not None:
            self.kill(f"stop handlers did not finish within {timeout_ms:g} ms", hard=True)

    def on_signal(self, signum: int, _frame: Any = None) -> None:
        """Main thread, between bytecodes (also while the Sequence blocks the loop). A second
        signal may arrive inside this handler, so the decision is recorded before anything else."""
        name = signal.Signals(signum).name
        if self.kill_requested or self._stop_pending or self.loop is None:
            self.kill_requested = True
            self.render.note(f"{name}: killing the Sequence")
            self.kill(f"signal {name}", hard=True)
            return
        if self.loop.is_closed():  # the run is over (an atexit callback): nothing left to stop, and
            return  # from 3.12 on the deadline thread could not even start at interpreter shutdown
        self._stop_pending = True
        can_keepalive = not self._policy.stop_requested  # after a keepalive: a final stop
        timeout = self.opts.stop_timeout_ms
        stop_id = self.begin_stop(timeout, can_keepalive)
        _call_on_loop(self.loop, self.run_stop_handlers, stop_id, timeout, can_keepalive)
        if can_keepalive:
            self.render.note(f"{name}: stopping the Sequence (stop handlers get {timeout:g} ms; again to kill)")
        else:
            self.render.note(f"{name}: stopping the Sequence, no keepalive this time (again to kill)")


def _failed(exc: BaseException, render: Render, backend: InlineBackend) -> bool:
    """Classify what run() raised as the runner does; False: ``sys.exit(0)``, a clean end."""
    from ..sequence.failure import classify_run_error

    failure = classify_run_error(exc)
    if failure is None:
        return False
    render.stdio("stderr", failure.stack.encode())
    backend.finish(failure.code)
    return True


def _terminal() -> tuple[Any, Any]:
    try:
        tty = open("/dev/tty", "r+", encoding="utf-8")  # noqa: SIM115 - lives as long as pdb does
        return tty, tty
    except OSError:
        return sys.__stdin__, sys.__stderr__


def _breakpointhook(render: Render) -> Any:
    def hook(*args: Any, **kwargs: Any) -> None:
        import pdb  # noqa: T100 - breakpoint() in inline mode is the point

        stdin, stdout = _terminal()
        if stdin is None or not stdin.isatty():
            render.note("breakpoint() ignored: no terminal to debug on")
            return
        pdb.Pdb(stdin=stdin, stdout=stdout).set_trace(sys._getframe(1))

    return hook


def run_inline(opts: RunOptions) -> int:
    try:
        code = _run_inline(opts)
    finally:
        _remove_unpacked()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        _hard_exit(code)  # as the runner does: the interpreter's exit would wait for the Sequence's threads
    return code


def _run_inline(opts: RunOptions) -> int:
    render = Render(opts.log_format, opts.color, opts.verbose)
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        out_fd = os.dup(1)
    except OSError:  # fd 1 is closed: the output goes nowhere
        out_fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(2, 1)
    sys.stdout = PrefixedText(render, "stdout")
    sys.stderr = PrefixedText(render, "stderr")
    if not os.environ.get("PYTHONBREAKPOINT"):
        sys.breakpointhook = _breakpointhook(render)
    backend = InlineBackend(render, opts)
    tally = RunTally()
    os.environ.update(opts.sequence_env())  # before the Sequence is imported, as the child runner has it
    input_fd = None if opts.stdin_path == "-" and opts.input_path is None else open_source(opts.input_path)
    if input_fd == 0 and os.isatty(0):
        render.note("reading the input from the terminal; end it with Ctrl-D")

    from ..sequence.loader import SequenceLoadError, SequencePathError, load_sequence

    try:
        seq = load_sequence(opts.path, extract_dir=_extract_dir(opts.path))
    except SequencePathError as exc:
        render.stdio("stderr", f"{exc}\n".encode())
        render.exit(int(ExitCode.INVALID_SEQUENCE_PATH), tally=tally)
        return int(ExitCode.INVALID_SEQUENCE_PATH)
    except SequenceLoadError as exc:
        render.stdio("stderr", exc.traceback_text.encode())
        render.exit(int(ExitCode.FAILED_ON_START), tally=tally)
        return int(ExitCode.FAILED_ON_START)
    except Exception:  # noqa: BLE001 - any import-time failure of the Sequence is exit 22
        render.stdio("stderr", traceback.format_exc().encode())
        render.exit(int(ExitCode.FAILED_ON_START), tally=tally)
        return int(ExitCode.FAILED_ON_START)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, backend.on_signal)
    sampler = ProcessSampler()
    reporter = StatsReporter(sampler.sample, render.stats, opts.stats_interval)
    reporter.start()
    try:
        code = asyncio.run(_main(seq, opts, backend, render, out_fd, input_fd, (tally, sampler)))
    finally:
        reporter.stop()
    render.exit(code, tally=tally)
    return code


async def _write_output(batches: AsyncIterator[list[Any]], encode: Callable[[list[Any]], bytes], out_fd: int,
                        counters: tuple[RunTally, ProcessSampler]) -> None:
    """The Sequence's output to the real stdout, byte for byte (a reader gone: the rest is dropped)."""
    tally, sampler = counters
    broken = False
    async for batch in batches:
        sampler.out_items += len(batch)
        data = encode(batch)
        tally.output.add(data)
        view = memoryview(data)
        while view and not broken:
            try:
                view = view[os.write(out_fd, view):]
            except BrokenPipeError:
                broken = True


async def _main(seq: Any, opts: RunOptions, backend: InlineBackend, render: Render,
                out_fd: int, input_fd: int | None, counters: tuple[RunTally, ProcessSampler]) -> int:
    from ..sequence.content import decode_input, output_encoder
    from ..sequence.context import AppContext
    from ..sequence.shapes import SequenceInput, start_sequence
    from ..stdin import StdinBuffer, StdinText

    loop = asyncio.get_running_loop()
    backend.loop = loop
    backend.finished = loop.create_future()
    logger = logging.getLogger("Sequence")
    logger.handlers[:] = [RenderLogHandler(render)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    context = AppContext(backend, config=opts.config or {}, instance_id=f"inline-{uuid.uuid4()}",
                         logger=logger)
    backend.context = context

    stdin_buffer = StdinBuffer(lambda n: None)
    sys.stdin = StdinText(stdin_buffer)

    async def feed_stdin() -> None:
        fd = open_source(opts.stdin_path) if opts.stdin_path is not None else None
        async for chunk in read_chunks(fd):
            stdin_buffer.feed([chunk])
        stdin_buffer.end()

    async def send_events() -> None:
        for name, message in opts.events:
            context.dispatch_event(name, message)

    async def dispatch(name: str, message: Any) -> None:
        context.dispatch_event(name, message)

    async def run() -> None:
        sequence_input = SequenceInput()
        content_type = opts.content_type or seq.input_content_type or "text/plain"
        tally.input_type = content_type
        chunks = count_chunks(read_chunks(input_fd), tally.input)
        sequence_input.attach(count_items(decode_input(content_type, chunks), sampler))
        args = opts.args if opts.args is not None else list(seq.default_args or [])
        result = await start_sequence(seq, context, sequence_input, args)
        if result.output is None:
            return
        tally.output_type = result.content_type
        await _write_output(result.output, output_encoder(result.content_type), out_fd, counters)

    async def guarded() -> None:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - classified as in the runner (sequence/failure.py)
            if _failed(exc, render, backend):
                return
        exit_timeout = exit_delay_ms(context.exit_timeout)
        await asyncio.sleep(exit_timeout / 1000.0)
        backend.finish(0)

    tally, sampler = counters
    helpers = [asyncio.ensure_future(feed_stdin()), asyncio.ensure_future(sampler.tick())]
    task = asyncio.ensure_future(guarded())
    await asyncio.sleep(0)  # run() registers its context.on callbacks before --event arrives
    if not task.done():
        render.note("the Sequence is running", always=False)
    helpers.append(asyncio.ensure_future(send_events()))
    helpers += [asyncio.ensure_future(forward_events(source, dispatch, render.note)) for source in opts.event_sources]
    code = await backend.finished
    for t in (task, *helpers):
        t.cancel()
    await asyncio.wait([task, *helpers], timeout=2.0)
    return code
