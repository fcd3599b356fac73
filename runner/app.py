"""The runner process from handshake to exit (docs/runner.md).

config → connect → PING/PONG → load → PANG {requires} → heartbeat → input from
IN → start_sequence → PANG {provides} → output batches to OUT within credit →
END OUT → SEQUENCE_COMPLETED → EXITING 0. Every exit, good or bad, goes through
``ControlPlane.exit`` so what the Sequence produced is flushed first.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

from . import __version__
from .config import Settings
from .protocol import Channel, Error, ExitCode, Ping, Pong, SequenceCompleted
from .transport.base import HandshakeFailed, Transport

CAPABILITIES = ["stdio", "events", "monitoring", "stop", "keepalive"]
#: The start of the exit reason (EXITING ``reason``, the line on the real stderr) per exit code.
FAILURES = {
    int(ExitCode.INVALID_SEQUENCE_PATH): "invalid Sequence path",
    int(ExitCode.FAILED_ON_START): "Sequence failed on start",
    int(ExitCode.FAILED_DURING_EXECUTION): "Sequence failed during execution",
}


class ConfigExit(Exception):
    """Exit 20 before anything else happened; the message is for stderr."""


def select_transport(settings: Settings, env: dict[str, str] | None = None) -> Transport:
    """The protocol-v1 transport for these settings (STH mode is runner.sth_mode's, before this)."""
    env = dict(os.environ) if env is None else env
    if settings.fd is None and settings.connect is None and env.get("INSTANCES_SERVER_PORT"):
        raise ConfigExit("STH mode takes no options (see docs/sth-compat.md)")
    from .transport import native

    try:
        if settings.fd is not None:
            sock = native.from_fd(settings.fd)
        else:
            assert settings.connect is not None
            sock = native.connect(settings.connect, settings.connect_timeout)
    except OSError as exc:
        where = f"fd {settings.fd}" if settings.fd is not None else ":".join(map(str, settings.connect or ()))
        raise ConfigExit(f"cannot use the connection {where}: {exc}") from None
    return native.NativeTransport(sock)


class App:
    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        self.out_items = 0
        self.heartbeat: Any = None
        self.run_info: Any = None

    # -- start-up -----------------------------------------------------------------------
    def handshake(self) -> Pong:
        hello = Ping(
            instance_id=self.settings.instance_id,
            token=self.settings.token,
            pid=os.getpid(),
            created=int(time.time() * 1000),
            runner_version=__version__,
            python=sys.version.split()[0],
            capabilities=list(CAPABILITIES),
        )
        try:
            return self.transport.handshake(hello, self.settings.connect_timeout)
        except HandshakeFailed as exc:
            raise ConfigExit(str(exc)) from None

    def run(self) -> NoReturn:
        from . import signals

        pong = self.handshake()
        signals.handshake_done()  # a signal from now on waits for the control plane
        from .credentials import forget_token

        forget_token(self.settings.token)  # used: the Sequence and its children never see it
        self.settings.token = ""
        from . import logs
        from .control import ControlPlane
        from .monitor import Heartbeat
        from .stdio import Stdio

        transport = self.transport
        self.stdio = Stdio(transport.writer(Channel.STDOUT), transport.writer(Channel.STDERR),
                           lambda n: transport.consumed(Channel.STDIN, n))
        self.control = ControlPlane(transport, self.stdio)

        self.runner_log, self.sequence_log = logs.setup(self.transport.writer(Channel.LOG),
                                                        self.settings.log_level)
        self.heartbeat = Heartbeat(self.transport, self.channel_stats)
        self.control.on_rate = self.heartbeat.set_rate
        self.transport.start(self.control)
        self.heartbeat.start()  # before loading: a long import still shows a live runner
        self.stdio.install()
        from .stdio import install_breakpoint_hint

        install_breakpoint_hint()
        self._install_signals()
        self.runner_log.info("connected; loading %s", self.settings.sequence)
        seq = self.load()
        app_config = pong.app_config
        if app_config is None:
            app_config = self.settings.app_config or {}
        args = pong.args
        if args is None:
            args = self.settings.args if self.settings.args is not None else list(seq.default_args or [])
        from .announce import TopicAnnouncer
        from .sequence.topics import declared_topics

        self.announcer = TopicAnnouncer(self.transport)
        self.load_topics = declared_topics(seq)
        self.announcer.loaded(self.load_topics)
        from .sequence.context import AppContext

        context = AppContext(self.control, config=app_config, instance_id=self.settings.instance_id,
                             logger=self.sequence_log,
                             exit_timeout_ms=int(getattr(self.transport, "exit_timeout_ms", 0)))
        self.control.context = context
        try:
            self._run_loop(seq, context, args)
        except BaseException as exc:  # noqa: BLE001 - whatever ends the loop goes through the exit path
            self._escaped(exc)
        raise AssertionError("unreachable")

    def _escaped(self, exc: BaseException) -> NoReturn:
        """Something the Sequence raised got past the task that runs it: a ``sys.exit()`` or
        KeyboardInterrupt in an event callback, a stop handler or a task of its own (asyncio lets
        those two through the loop). The same classification as inside run(), the same exit path:
        never the interpreter's own exit, which would wait for the Sequence's non-daemon threads."""
        from .sequence.failure import classify_run_error

        failure = classify_run_error(_first_of_group(exc))
        if failure is None:
            self._complete_without_loop()
        else:
            self.fail(failure.code, failure.message, failure.stack)

    def _complete_without_loop(self) -> NoReturn:
        from .control import EXIT_BUDGET

        writer = self.transport.writer(Channel.OUT)
        writer.end()
        deadline = time.monotonic() + EXIT_BUDGET
        while not (writer.ended or writer.failed) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.control.stop_overtaken()
        self.transport.send(SequenceCompleted(timeout_ms=0))
        self.control.exit(0, "the Sequence called sys.exit(0)")
        raise SystemExit(0)  # not reached: exit() ends the process

    def load(self) -> Any:
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
        from pathlib import Path

        from .sequence import archive

        if not archive.is_archive(Path(self.settings.sequence)):
            return None
        path = archive.extraction_dir()
        self.control.at_exit.append(lambda: archive.remove_extraction(path))
        try:
            archive.prepare_extraction_dir(path)
        except OSError as exc:
            message = (f"cannot create the directory {path} to unpack the package into ({exc}); "
                       f"set {archive.EXTRACT_ROOT_ENV} to a writable directory")
            self.fail(int(ExitCode.INVALID_SEQUENCE_PATH), message, message + "\n")
        return str(path)

    def fail(self, code: int, message: str, stack: str) -> NoReturn:
        """Traceback on STDERR and LOG, ERROR, then exit with ``code`` (output flushed first).

        The exit reason line (``runner: Sequence failed ...: message``) also goes to the
        process's real stderr (``ControlPlane.exit``), and so does the traceback when the host
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
        self.control.exit(code, f"{FAILURES.get(code, 'Sequence failed')}: {message}")
        raise SystemExit(code)  # not reached: exit() ends the process

    def _install_signals(self) -> None:
        from . import signals

        signals.install()  # normally done at start-up (runner.__main__); harmless again
        signals.hand_over(self.control.on_signal)
        from .reaper import become_subreaper, start_reaper

        # Orphaned descendants are adopted (and ended on exit, ControlPlane._exit). Only a PID 1
        # reaps them as it goes: elsewhere a reaper could take the exit status of the Sequence's
        # own child from under subprocess; adopted zombies go with the runner.
        if become_subreaper() and os.getpid() == 1:
            start_reaper()

    def channel_stats(self) -> dict[str, Any]:
        stats = {name: {"bytes": w.bytes, "items": w.items} for name, w in self.transport_channels().items()}
        if "out" in stats:
            stats["out"]["items"] = self.out_items
        stats["in"] = {"bytes": self.control.in_bytes, "items": self.control.in_items}
        stats["stdin"] = {"bytes": self.stdio.stdin.bytes, "items": self.stdio.stdin.items}
        return stats

    def transport_channels(self) -> dict[str, Any]:
        return {ch.name.lower(): self.transport.writer(ch)
                for ch in (Channel.STDOUT, Channel.STDERR, Channel.OUT, Channel.LOG)}

    # -- the event loop ---------------------------------------------------------------------
    def _run_loop(self, seq: Any, context: Any, args: list[Any]) -> None:
        import anyio

        use_uvloop = os.environ.get("SEQUENCE_RUNNER_UVLOOP", "1").strip() not in ("0", "false", "no")
        if use_uvloop:
            try:
                import uvloop  # noqa: F401
            except ImportError:
                use_uvloop = False
        anyio.run(self._main, seq, context, args, backend="asyncio",
                  backend_options={"use_uvloop": use_uvloop})

    async def _main(self, seq: Any, context: Any, args: list[Any]) -> None:
        import asyncio

        import anyio

        from .bridge import LoopBridge
        from .sequence.shapes import SequenceInput

        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as tg:
            bridge = LoopBridge(loop, tg)
            tg.start_soon(bridge.serve)
            self.control.attach_loop(loop, bridge, context)
            self.heartbeat.attach(bridge, context)
            from .instream import InputStream

            stream = InputStream(loop, self.transport, self.control)
            self.control.attach_input(stream.feed)
            sequence_input = self.sequence_input = SequenceInput()

            def input_ct() -> str | None:
                run = self.run_info
                declared = (run.input_content_type if run is not None else None) or \
                    self.load_topics.input_content_type
                return str(declared) if declared else None

            tg.start_soon(self._guard, stream.attach_to(sequence_input, input_ct))
            await self._guard(self._run_sequence(loop, seq, context, sequence_input, args))
            await self._complete(context)

    async def _guard(self, work: Awaitable[None]) -> None:
        """What the Sequence (or its input) raises is classified (runner/sequence/failure.py): an
        exception, ``sys.exit(n)``, KeyboardInterrupt or undecodable input fail it with 23;
        ``sys.exit(0)`` returns here as if run() had returned, and the run completes."""
        import anyio

        try:
            await work
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # noqa: BLE001 - sys.exit() and KeyboardInterrupt are the Sequence's too
            from .sequence.failure import classify_run_error

            failure = classify_run_error(exc)
            if failure is not None:
                self.fail(failure.code, failure.message, failure.stack)
            self.runner_log.info("the Sequence called sys.exit(%s): completing as if run() returned",
                                 getattr(exc, "code", None))

    def _warn_if_input_unread(self) -> None:
        """A run() that forgets to return (or to read) leaves the input unread and would end with
        exit 0 and no output: say so once (issue 14 item 6)."""
        sequence_input = getattr(self, "sequence_input", None)
        if sequence_input is not None and self.control.in_bytes and not sequence_input.touched:
            self.runner_log.warning("%s", _unread_input_warning(self.control.in_bytes))

    async def _run_sequence(self, loop: Any, seq: Any, context: Any, sequence_input: Any,
                            args: list[Any]) -> None:
        from .sequence.content import output_buffers_encoder
        from .sequence.shapes import start_sequence
        from .sequence.topics import declared_topics

        run = self.run_info = await start_sequence(seq, context, sequence_input, args)
        self.announcer.output_known(run)

        def recheck() -> None:  # topics an async generator's body set while it ran
            self.announcer.recheck(declared_topics(seq, run.result), run.content_type)

        if run.output is not None:
            await self._pump(loop, run.output, output_buffers_encoder(run.content_type), recheck)
        recheck()

    async def _pump(self, loop: Any, output: AsyncIterator[list[Any]], encode: Any,
                    after_first_batch: Callable[[], None]) -> None:
        import asyncio

        from .sequence.content import OutputEncodeError

        writer = self.transport.writer(Channel.OUT)
        space = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(space.set)
            except RuntimeError:  # the loop is closed: the process is exiting
                pass

        offer = writer.offer
        first = True
        async for batch in output:
            if first:
                first = False
                after_first_batch()
            self.out_items += len(batch)
            failed: OutputEncodeError | None = None
            try:
                buffers = encode(batch)  # a list of buffers: binary output is not joined
            except OutputEncodeError as exc:
                buffers, failed = [exc.partial], exc  # the items before the bad one still go out
            for data in buffers:
                if not data:
                    continue
                while not offer(data, wake):
                    await space.wait()
                    space.clear()
            if failed is not None:
                raise failed

    async def _complete(self, context: Any) -> None:
        import anyio

        self._warn_if_input_unread()

        writer = self.transport.writer(Channel.OUT)
        writer.end()
        while not (writer.ended or writer.failed):  # END goes out once the host gave credit for all
            await anyio.sleep(0.005)
        from .protocol.stop import exit_delay_ms

        exit_timeout = exit_delay_ms(context.exit_timeout)
        self.control.stop_overtaken()
        if not self.transport.send(SequenceCompleted(timeout_ms=exit_timeout)):
            # SEQUENCE_STOPPED went first (stop or end()): the host decides with KILL.
            self.runner_log.info("run() finished after SEQUENCE_STOPPED; waiting for KILL")
            await anyio.sleep_forever()
        await anyio.sleep(exit_timeout / 1000.0)
        self.control.exit(0, "the Sequence completed")


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
