"""The data side of an Instance: input with credit, output channels, events.

A mixin of ``Instance`` (instance.py holds its state and lifecycle): the methods
here only move bytes and events between the hub and the Receiver/InputSide the
Instance owns.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import anyio
import anyio.lowlevel

from runner.protocol import Channel, Event, Status
from runner.protocol.connection import Connection
from runner.protocol.events import Message

from .content import TEXT, decode_items, log_records
from .errors import InstanceNotRunning
from .events import EventMessage, EventSubscription
from .info import InstanceInfo
from .inputs import InputSide
from .link import Link
from .receive import Receiver
from .splice import PipeSplice


class InstanceStreams:
    """Input, output and events of one Instance (see Instance)."""

    # Provided by Instance.
    id: str
    info: InstanceInfo
    ready: anyio.Event
    connected: anyio.Event
    _conn: Connection
    _link: Link | None
    _closed: bool
    _input: InputSide
    _receiver: Receiver

    @property
    def status(self) -> Status:
        raise NotImplementedError

    def _send(self, link: Link, message: Message) -> None:
        raise NotImplementedError

    # -- input -----------------------------------------------------------------
    def _link_now(self) -> Link | None:
        """The open link, None before the handshake ended; InstanceNotRunning when there is none."""
        if not self.ready.is_set():
            return None
        if self._closed or self._link is None or not self.connected.is_set():
            raise InstanceNotRunning(f"instance {self.id} is {self.status.value} and has no open connection")
        return self._link

    async def _open(self) -> Link:
        link = self._link_now()
        if link is None:
            await self.ready.wait()
            link = self._link_now()
            assert link is not None
        return link

    async def _open_link(self) -> tuple[Connection, Link]:
        link = await self._open()
        return self._conn, link

    async def write_input(self, data: bytes | bytearray | memoryview | str, *, content_type: str | None = None) -> None:
        """Write bytes to the Sequence's input, waiting for credit; a str in the charset of the input
        content type (``text/plain; charset=latin-1``; UTF-8 without one).

        ``content_type`` (or the bridge option ``input_content_type``) is sent as
        INPUT_CONTENT_TYPE before the first input byte; it cannot change afterwards.
        Without one the runner uses the Sequence's ``requires`` content type.
        """
        await self._input.write(Channel.IN, data, content_type)
        self._note_input_type()

    async def write_input_file(self, fd: int, *, content_type: str | None = None) -> int:
        """Write the rest of the regular file ``fd`` to the Sequence's input, without reading it
        into this process (``os.sendfile``; where that is missing, use ``write_input``). Returns
        the number of bytes written; ``content_type`` as in ``write_input``."""
        try:
            return await self._input.write_file(Channel.IN, fd, content_type)
        finally:
            self._note_input_type()

    async def write_stdin(self, data: bytes | bytearray | memoryview | str) -> None:
        """Write to the Sequence's ``sys.stdin``."""
        await self._input.write(Channel.STDIN, data)

    async def set_input_content_type(self, content_type: str) -> None:
        await self._input.write(Channel.IN, b"", content_type)
        self._note_input_type()

    async def send_input(
        self,
        source: bytes | str | Iterable[Any] | AsyncIterable[Any],
        *,
        content_type: str | None = None,
        end: bool = True,
    ) -> None:
        """Send a whole input: bytes/str, or items (str lines, bytes, or JSON values for ndjson).

        Items are encoded for the content type (named here or in the options, else
        the Sequence's declared one, else text) and written in batches; the input is
        ended afterwards unless ``end=False``.
        """
        declared = self.info.input_content_type
        try:
            await self._input.send_all(source, content_type, declared, end)
        finally:
            self._note_input_type()

    def _note_input_type(self) -> None:
        sent = self._input.content_type_sent
        if sent:
            self.info.input_content_type = self._receiver.input_content_type_sent = sent

    async def end_input(self) -> None:
        """End the input stream (the Sequence's input iterator finishes)."""
        await self._input.end(Channel.IN)

    async def end_stdin(self) -> None:
        await self._input.end(Channel.STDIN)

    # -- output ------------------------------------------------------------------
    def _consumed(self, channel: int, n: int) -> None:
        if self._closed:
            return
        self._conn.consumed(channel, n)
        if self._link is not None:
            self._link.flush()

    def output(self) -> AsyncIterator[bytes]:
        """The Sequence's output as byte chunks (one reader per channel)."""
        return self._receiver.channel("output").__aiter__()

    def splice_output(
        self,
        fd: int,
        idle: Callable[[], bool],
        on_spliced: Callable[[int], None],
        on_gone: Callable[[], None],
    ) -> bool:
        """Let the Sequence's output go from the runner's socket straight into the pipe ``fd``
        (Linux ``os.splice``: the bytes never enter this process) whenever nothing of it waits
        ahead, in ``output()`` or in the caller's own writer (``idle()`` is False while the caller
        holds output it has not written to ``fd`` yet). Whatever is not spliced still comes
        through ``output()``, in order. ``on_spliced(n)``: n more bytes went into the pipe;
        ``on_gone()``: its reader went away (EPIPE), splicing stopped. False where it cannot be
        done (no ``os.splice``, ``fd`` not a pipe, no connection): ``output()`` carries it all."""
        link = self._link
        if link is None or self._closed:
            return False
        channel = self._receiver.channels[Channel.OUT]

        def nothing_ahead() -> bool:
            return channel.buffered == 0 and idle()

        def delivered(n: int) -> None:
            self._receiver.mark_output()
            on_spliced(n)
            self._consumed(Channel.OUT, n)

        def keep(data: Any) -> None:
            self._receiver.on_data(Channel.OUT, data)

        splice = PipeSplice.for_fd(fd, Channel.OUT, nothing_ahead, delivered, keep, on_gone)
        if splice is None:
            return False
        link.splice = splice
        return True

    def stdout(self) -> AsyncIterator[bytes]:
        return self._receiver.channel("stdout").__aiter__()

    def stderr(self) -> AsyncIterator[bytes]:
        return self._receiver.channel("stderr").__aiter__()

    async def output_items(self, content_type: str | None = None) -> AsyncIterator[Any]:
        """Decoded output: JSON values (ndjson), str lines with their "\\n" (text), bytes chunks (octet-stream).

        The content type is the argument, else the one the runner declared (PANG), else
        text/plain. It is decided when the first chunk arrives (PANG comes before output).
        """
        channel = self._receiver.channel("output")
        first = await channel.receive()
        if first is None:
            return
        ctype = content_type or self.info.output_content_type or TEXT

        async def chunks() -> AsyncIterator[bytes]:
            yield first
            async for chunk in channel:
                yield chunk

        async for item in decode_items(chunks(), ctype):
            yield item

    def logs(self) -> AsyncIterator[dict[str, Any]]:
        """Log records (one dict per LOG line: ts, level, from, msg, exc)."""
        return log_records(self._receiver.channel("log").__aiter__())

    def discard(self, *channels: str) -> None:
        """Drop what arrives on these channels ("stdout", "stderr", "output", "log") unread,
        returning its credit at once: for channels nobody will read, so the runner never waits on them."""
        for name in channels:
            self._receiver.channel(name).discard()

    def buffered(self, channel: str) -> int:
        """Bytes received on ``channel`` ("stdout", "stderr", "output", "log") and not read yet."""
        return self._receiver.channel(channel).buffered

    # -- events --------------------------------------------------------------------
    async def send_event(self, name: str, message: Any = None, *, source: str | None = None) -> None:
        """Send EVENT {eventName, message} to the Sequence (its context.on handlers)."""
        # One yield (and cancellation point) first, then one sendmsg: no hop through the writer task.
        link = self._link_now()
        if link is not None:
            await anyio.lowlevel.checkpoint()
            link = self._link_now()  # the state again, after the yield
        if link is None:
            link = await self._open()
        self._send(link, Event(name=name, message=message, source=source))

    def events(self, name: str | None = None) -> EventSubscription:
        """Subscribe now to events from the Sequence (all, or those named ``name``); async-iterate it."""
        return self._receiver.events.subscribe(name)

    async def once(self, name: str) -> EventMessage:
        """The next event named ``name``; InstanceNotRunning if the connection ends first."""
        with self._receiver.events.subscribe(name) as subscription:
            event = await subscription.receive()
        if event is None:
            raise InstanceNotRunning(f"instance {self.id} ended before event {name!r}")
        return event

    def last_event(self, name: str) -> EventMessage | None:
        """The last event named ``name`` seen so far (None if none)."""
        return self._receiver.events.last.get(name)
