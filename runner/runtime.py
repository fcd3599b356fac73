"""The runner process after the handshake: its parts, and the run from loading to the exit.

``Runtime.__init__`` makes every part, typed, and nothing else; ``run`` wires them
in order: the transport's reader hands over to the ControlHandler, the heartbeat
starts (before loading: a long import still shows a live runner), stdio and
signals are taken over, the Sequence is loaded, PANG announces what it requires,
and the event loop runs it. Every exit, good or bad, goes through the ExitPath
so what the Sequence produced is flushed first.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, NoReturn

from .announce import TopicAnnouncer
from .config import Settings
from .control import ControlHandler
from .exiting import ExitPath
from .logs import RUNNER_LOGGER, SEQUENCE_LOGGER
from .monitor import Heartbeat
from .protocol import Channel, Error, ExitCode, Pong, SequenceCompleted
from .protocol.stop import EXIT_BUDGET, exit_delay_ms
from .sequence.topics import Topics, declared_topics
from .stdio import Stdio
from .stopping import StopControl
from .transport.base import Transport

if TYPE_CHECKING:
    from .backend import RunnerBackend
    from .bridge import LoopBridge
    from .loop import TaskSet
    from .output import OutputPump
    from .sequence.context import AppContext
    from .sequence.inputs import SequenceInput
    from .sequence.loader import LoadedSequence
    from .sequence.shapes import SequenceRun

__all__ = ["FAILURES", "Runtime"]

#: The start of the exit reason (EXITING ``reason``, the line on the real stderr) per exit code.
FAILURES = {
    int(ExitCode.INVALID_SEQUENCE_PATH): "invalid Sequence path",
    int(ExitCode.FAILED_ON_START): "Sequence failed on start",
    int(ExitCode.FAILED_DURING_EXECUTION): "Sequence failed during execution",
}


class Runtime:
    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        self.stdio = Stdio(transport.writer(Channel.STDOUT), transport.writer(Channel.STDERR),
                           lambda n: transport.consumed(Channel.STDIN, n))
        self.exits = ExitPath(transport, self.stdio)
        self.stops = StopControl(transport, self.exits)
        self.heartbeat = Heartbeat(transport, self.channel_stats)
        self.control = ControlHandler(self.stdio, self.stops, self.exits, self.heartbeat.set_rate)
        self.announcer = TopicAnnouncer(transport)
        # Made when first used, after the first PANG: their modules (with runner.bridge and
        # runner.sequence.compat) are not needed before it (~0.3 ms of every start to PANG).
        self._backend: RunnerBackend | None = None
        self._output: OutputPump | None = None
        self._sequence_input: SequenceInput | None = None
        self.runner_log = logging.getLogger(RUNNER_LOGGER)
        self.sequence_log = logging.getLogger(SEQUENCE_LOGGER)
        #: The topics the Sequence declared when it was loaded (the first PANG).
        self.load_topics = Topics()
        #: What run() produced, once it has.
        self.run_info: SequenceRun | None = None

    @property
    def backend(self) -> RunnerBackend:
        """What the Sequence's AppContext talks to."""
        if self._backend is None:
            from .backend import RunnerBackend

            self._backend = RunnerBackend(self.transport, self.stops)
        return self._backend

    @property
    def output(self) -> OutputPump:
        """Takes what run() produces to OUT."""
        if self._output is None:
            from .output import OutputPump

            self._output = OutputPump(self.transport)
        return self._output

    @property
    def sequence_input(self) -> SequenceInput:
        """The ``input`` run() is given."""
        if self._sequence_input is None:
            from .sequence.inputs import SequenceInput

            self._sequence_input = SequenceInput()
        return self._sequence_input

    # -- from the handshake to the loop ---------------------------------------------------------
    def run(self, pong: Pong) -> NoReturn:
        from . import logs

        logs.setup(self.transport.writer(Channel.LOG), self.settings.log_level)
        self.transport.start(self.control)
        self.heartbeat.start()  # before loading: a long import still shows a live runner
        self.stdio.install()
        from .stdio import install_breakpoint_hint

        install_breakpoint_hint()
        self._install_signals()
        self.runner_log.info("connected; loading %s", self.settings.sequence)
        collect_from_here()
        from .deferred_imports import remove

        remove()  # what the Sequence imports first is imported as usual (runner/deferred_imports.py)
        seq = self.load()
        app_config = pong.app_config
        if app_config is None:
            app_config = self.settings.app_config or {}
        args = pong.args
        if args is None:
            args = self.settings.args if self.settings.args is not None else list(seq.default_args or [])
        self.load_topics = declared_topics(seq)
        self.announcer.loaded(self.load_topics)
        from .thread_start import wait_all

        wait_all()  # started by a helper while the Sequence loaded: from here on they run, as before
        from .sequence.context import AppContext

        context = AppContext(self.backend, config=app_config, instance_id=self.settings.instance_id,
                             logger=self.sequence_log, exit_timeout_ms=self.transport.exit_timeout_ms)
        self.exits.use_kill_handlers(context.run_kill_handlers)
        try:
            self._run_loop(seq, context, args)
        except BaseException as exc:  # noqa: BLE001 - whatever ends the loop goes through the exit path
            self._escaped(exc)
        raise AssertionError("unreachable")

    def _install_signals(self) -> None:
        from . import signals

        signals.install()  # normally done at start-up (runner.__main__); harmless again
        signals.hand_over(self.stops.on_signal)
        from .reaper import become_subreaper, start_reaper

        # Orphaned descendants are adopted (and ended on exit, ExitPath._exit). Only a PID 1
        # reaps them as it goes: elsewhere a reaper could take the exit status of the Sequence's
        # own child from under subprocess; adopted zombies go with the runner.
        if become_subreaper() and os.getpid() == 1:
            start_reaper()

    def load(self) -> LoadedSequence:
        from .sequence.loader import SequenceLoadError, SequencePathError, load_sequence

        try:
            return load_sequence(self.settings.sequence, extract_dir=self._extraction_dir())
        except SequencePathError as exc:
            self.fail(int(ExitCode.INVALID_SEQUENCE_PATH), str(exc), f"{exc}\n")
        except SequenceLoadError as exc:
            self.fail(int(ExitCode.FAILED_ON_START), str(exc), exc.traceback_text)
        except Exception as exc:  # noqa: BLE001 - any import-time failure of the Sequence is exit 22
            import traceback

            self.fail(int(ExitCode.FAILED_ON_START), f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def _extraction_dir(self) -> str | None:
        """A package is unpacked into this runner's own directory, removed on every exit."""
        from .sequence.paths import is_archive

        if not is_archive(self.settings.sequence):
            return None
        from .sequence import archive

        path = archive.extraction_dir()
        self.exits.at_exit.append(archive.remover(path))
        try:
            archive.prepare_extraction_dir(path)
        except OSError as exc:
            message = (f"cannot create the directory {path} to unpack the package into ({exc}); "
                       f"set {archive.EXTRACT_ROOT_ENV} to a writable directory")
            self.fail(int(ExitCode.INVALID_SEQUENCE_PATH), message, message + "\n")
        return str(path)

    # -- the exits ----------------------------------------------------------------------------
    def fail(self, code: int, message: str, stack: str) -> NoReturn:
        """Traceback on STDERR and LOG, ERROR, then exit with ``code`` (output flushed first).

        The exit reason line (``runner: Sequence failed ...: message``) also goes to the
        process's real stderr (``ExitPath``), and so does the traceback when the host
        shows that stderr as the crash log (STH)."""
        from .stdio import diagnose

        if self.transport.stderr_is_crash_log:
            diagnose(stack)
        try:
            sys.stderr.write(stack if stack.endswith("\n") else stack + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            if not self.transport.stderr_is_crash_log:
                diagnose(stack)
        self.transport.writer(Channel.LOG).write(_exc_line(message, stack))
        self.transport.send(Error(message=message, stack=stack, exit_code=code))
        self.exits.exit(code, f"{FAILURES.get(code, 'Sequence failed')}: {message}")
        raise SystemExit(code)  # not reached: exit() ends the process

    def _escaped(self, exc: BaseException) -> NoReturn:
        """Something the Sequence raised got past the task that runs it: a ``sys.exit()`` or
        KeyboardInterrupt in an event callback, a stop handler or a task of its own (asyncio lets
        those two through the loop). The same classification as inside run(), the same exit path:
        never the interpreter's own exit, which would wait for the Sequence's non-daemon threads."""
        from .sequence.failure import classify_run_error

        failure = classify_run_error(_first_of_group(exc))
        if failure is not None:
            self.fail(failure.code, failure.message, failure.stack)
        self.output.end_without_loop(EXIT_BUDGET)
        self.stops.completed()
        self.transport.send(SequenceCompleted(timeout_ms=0))
        self.exits.exit(0, "the Sequence called sys.exit(0)")
        raise SystemExit(0)  # not reached: exit() ends the process

    # -- the event loop ---------------------------------------------------------------------
    def _run_loop(self, seq: LoadedSequence, context: AppContext, args: list[Any]) -> None:
        from . import loop

        loop.run(self._main(seq, context, args), loop.wants_uvloop())

    async def _main(self, seq: LoadedSequence, context: AppContext, args: list[Any]) -> None:
        import asyncio

        from .loop import TaskSet

        main = asyncio.current_task()
        assert main is not None
        tasks = TaskSet(main)
        try:
            bridge = self.attach_loop(tasks, context)
            await self._guard(self._run_sequence(bridge, seq, context, args))
            await self._complete(context)
        except asyncio.CancelledError:
            tasks.raise_failure()  # a task of the run failed: that, not the cancellation, ends it
            raise

    def attach_loop(self, tasks: TaskSet, context: AppContext) -> LoopBridge:
        """The loop's side of the run (on the loop): stops, host events and the heartbeat reach it
        through one LoopBridge, and the Sequence's input starts flowing as a task of ``tasks``."""
        import asyncio

        from .bridge import LoopBridge
        from .instream import InputStream

        bridge = LoopBridge(asyncio.get_running_loop(), tasks)
        self.stops.attach(bridge, context)
        self.control.attach_loop(bridge, context)
        self.heartbeat.attach(bridge, context)
        stream = InputStream(bridge, self.transport, self.control)
        self.control.attach_input(stream.feed)
        tasks.start_soon(self._guard, stream.attach_to(self.sequence_input, self._declared_input_type))
        return bridge

    def _declared_input_type(self) -> str | None:
        run = self.run_info
        declared = (run.input_content_type if run is not None else None) or self.load_topics.input_content_type
        return str(declared) if declared else None

    async def _guard(self, work: Awaitable[None]) -> None:
        """What the Sequence (or its input) raises is classified (runner/sequence/failure.py): an
        exception, ``sys.exit(n)``, KeyboardInterrupt or undecodable input fail it with 23;
        ``sys.exit(0)`` returns here as if run() had returned, and the run completes."""
        import asyncio

        try:
            await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - sys.exit() and KeyboardInterrupt are the Sequence's too
            from .sequence.failure import classify_run_error

            failure = classify_run_error(exc)
            if failure is not None:
                self.fail(failure.code, failure.message, failure.stack)
            self.runner_log.info("the Sequence called sys.exit(%s): completing as if run() returned",
                                 getattr(exc, "code", None))

    async def _run_sequence(self, bridge: LoopBridge, seq: LoadedSequence, context: AppContext,
                            args: list[Any]) -> None:
        from .sequence.content import output_buffers_encoder
        from .sequence.shapes import start_sequence

        run = self.run_info = await start_sequence(seq, context, self.sequence_input, args)
        self.announcer.output_known(run)

        def recheck() -> None:  # topics an async generator's body set while it ran
            self.announcer.recheck(declared_topics(seq, run.result), run.content_type)

        if run.output is not None:
            await self.output.pump(bridge, run.output, output_buffers_encoder(run.content_type), recheck)
        recheck()

    async def _complete(self, context: AppContext) -> None:
        import asyncio

        if self.control.in_bytes and not self.sequence_input.touched:
            # A run() that forgets to return (or to read) would end with exit 0 and no output.
            self.runner_log.warning("%s", _unread_input_warning(self.control.in_bytes))
        await self.output.end()  # END goes out once the host gave credit for all
        exit_timeout = exit_delay_ms(context.exit_timeout)
        self.stops.completed()
        if not self.transport.send(SequenceCompleted(timeout_ms=exit_timeout)):
            # SEQUENCE_STOPPED went first (stop or end()): the host decides with KILL.
            self.runner_log.info("run() finished after SEQUENCE_STOPPED; waiting for KILL")
            await asyncio.get_running_loop().create_future()  # never set
        await asyncio.sleep(exit_timeout / 1000.0)
        self.exits.exit(0, "the Sequence completed")

    # -- the heartbeat's counters -------------------------------------------------------------
    def channel_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        for channel in (Channel.STDOUT, Channel.STDERR, Channel.OUT, Channel.LOG):
            writer = self.transport.writer(channel)
            stats[channel.name.lower()] = {"bytes": writer.bytes, "items": writer.items}
        output = self._output  # this runs on the heartbeat's thread: no OutputPump made from here
        stats["out"]["items"] = output.items if output is not None else 0
        stats["in"] = {"bytes": self.control.in_bytes, "items": self.control.in_items}
        stats["stdin"] = {"bytes": self.stdio.stdin.bytes, "items": self.stdio.stdin.items}
        return stats


def collect_from_here() -> None:
    """The collector back on (runner/__main__.py kept it off during start-up), for the Sequence's
    import and run; what start-up made is frozen out of its passes (a full collection no longer
    walks the runner's and asyncio's ~50k objects)."""
    import gc

    gc.freeze()
    gc.enable()


def _unread_input_warning(in_bytes: int) -> str:
    return (f"the Sequence completed without reading its input ({in_bytes} bytes arrived on IN): "
            "does run() iterate `input` or return something built on it?")


def _first_of_group(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups, else ``exc`` itself."""
    while True:
        members = getattr(exc, "exceptions", None)
        if not members or not isinstance(members, (list, tuple)):
            return exc
        exc = members[0]


def _exc_line(message: str, stack: str) -> bytes:
    import json

    return (json.dumps({"ts": int(time.time() * 1000), "level": "ERROR", "from": "runner",
                        "msg": message, "exc": stack}) + "\n").encode()
