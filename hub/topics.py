"""Topics: named streams between producers and consumers (HTTP requests or Instances).

Every item a producer publishes reaches every consumer attached at that moment
exactly once, in the order it was published (per producer; the items of several
producers interleave whole). An item is a line for text and ndjson (a producer's
bytes are split at "\\n", so two producers never tear each other's lines), a chunk
for any other content type.

The topic keeps one buffer with a cursor per consumer. An item leaves the buffer
once every consumer has read it. While nobody consumes, items wait (up to the
bound). A consumer that joins while others are attached starts with the next new
item; one that joins when nobody consumes gets what waited.

The bound: a topic holds at most ``max_bytes`` (default 1 MiB) not yet read by
its slowest consumer. When full, producers wait, so the fastest consumer is never
more than ``max_bytes`` ahead of the slowest: a slow consumer slows everyone, it
never makes anyone lose an item. A consumer that disconnects is dropped at once.
"""

from __future__ import annotations

import codecs
import itertools
import sys
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from runner.protocol.content_types import charset_of
from runner.sequence.content import canonical_content_type, is_ndjson, normalize_content_type

NDJSON = "application/x-ndjson"
DEFAULT_TOPIC_BYTES = 1 << 20
_END = b""  # the end marker in the buffer (items are never empty)


@dataclass
class Actor:
    role: str  # "provider" or "consumer"
    type: str  # "api" (an HTTP request) or "instance"
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"role": self.role, "type": self.type, "stream": True}
        if self.id is not None:
            body["id"] = self.id
        return body


class LineSplitter:
    """A producer's bytes as whole items: lines for text and ndjson, chunks otherwise.

    Lines are cut at the charset's newline code unit, never inside a character: for UTF-8 and
    other ASCII-compatible charsets that is any b"\\n"; for UTF-16 and UTF-32 it is the newline's
    2 or 4 bytes at a code-unit boundary of the producer's stream (b"\\n" alone also occurs
    inside other characters there, such as U+010A, and cutting at it would tear both producers'
    text). The bytes are passed on as they came; nothing is decoded or re-encoded.
    """

    def __init__(self, content_type: str) -> None:
        ct = normalize_content_type(content_type)
        self.by_line = ct.startswith("text/") or is_ndjson(ct)
        self._ndjson = is_ndjson(ct)
        self._pending = b""
        self._codec = _other_codec(content_type) if self.by_line and not self._ndjson else None
        # b"": a "utf-16"/"utf-32" stream's byte-order mark decides it (see _newline_unit)
        self._newline = _newline_unit(self._codec, b"") if self._codec else b"\n"

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self.by_line:
            return [chunk] if chunk else []
        data = self._pending + chunk
        if self._codec is None:
            cut = data.rfind(b"\n") + 1
            self._pending = data[cut:]
            return data[:cut].splitlines(keepends=True) if cut else []
        return self._feed_wide(data)

    def _feed_wide(self, data: bytes) -> list[bytes]:
        """Cut ``data`` (which starts at a code-unit boundary) after each aligned newline unit."""
        if not self._newline:  # "utf-16"/"utf-32": wait for enough bytes for a byte-order mark
            if len(data) < 4:  # enough for either byte-order mark
                self._pending = data
                return []
            self._newline = _newline_unit(self._codec or "", data)
        unit, items, start = len(self._newline), [], 0
        at = data.find(self._newline)
        while at >= 0:
            if (at - start) % unit:  # inside a character: look again one byte on
                at = data.find(self._newline, at + 1)
                continue
            items.append(data[start:at + unit])
            start = at + unit
            at = data.find(self._newline, start)
        self._pending = data[start:]
        return items

    def flush(self) -> list[bytes]:
        rest, self._pending = self._pending, b""
        if not rest:
            return []
        return [rest + b"\n"] if self._ndjson else [rest]


def _other_codec(content_type: str) -> str | None:
    """The codec's name when its newline is not b"\\n" (UTF-16, UTF-32, EBCDIC), else None."""
    try:
        name = codecs.lookup(charset_of(content_type) or "utf-8").name
        newline = "\n".encode(name)
    except (LookupError, UnicodeError):
        return None  # refused where the text is decoded; here its bytes pass as lines of b"\n"
    return name if newline != b"\n" else None


def _newline_unit(codec: str, first: bytes) -> bytes:
    """The newline's bytes in ``codec``; for "utf-16"/"utf-32" the byte order is the stream's
    byte-order mark, or without one the order Python's decoder then assumes (the machine's);
    b"" while ``first`` is empty (not known yet)."""
    if codec in ("utf-16", "utf-32"):
        if not first:
            return b""
        order = "le" if sys.byteorder == "little" else "be"
        if first.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE) if codec == "utf-32"
                            else (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            order = "le" if first[0] == 0xFF else "be"
        codec = f"{codec}-{order}"
    return "\n".encode(codec)


@dataclass(eq=False)
class Consumer:
    actor: Actor
    cursor: int
    done: bool = False


@dataclass(eq=False)
class Topic:
    name: str
    content_type: str
    max_bytes: int = DEFAULT_TOPIC_BYTES
    actors: list[Actor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._items: deque[bytes] = deque()
        self._first = 0  # sequence number of _items[0]
        self._size = 0
        self._consumers: list[Consumer] = []
        self._changed = anyio.Event()
        self.closed = False

    @property
    def _next(self) -> int:
        return self._first + len(self._items)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _trim(self) -> None:
        if not self._consumers:
            return
        low = min(c.cursor for c in self._consumers)
        while self._first < low:
            self._size -= len(self._items.popleft())
            self._first += 1

    async def publish(self, items: list[bytes]) -> None:
        """Append items, waiting while the slowest consumer is ``max_bytes`` behind."""
        appended = False
        for item in items:
            while self._size >= self.max_bytes:
                if appended:
                    self._notify()  # let the consumers see what is in before waiting for them
                    appended = False
                await self._changed.wait()
            self._items.append(item)
            self._size += len(item)
            appended = True
        if appended:
            self._notify()

    def end(self) -> None:
        """The consumers attached now (and the next one, if none) end after the items before this."""
        self._items.append(_END)
        self._notify()

    async def consume(self, actor: Actor) -> AsyncIterator[bytes]:
        """Items for one consumer, joined per read; ends at an end marker."""
        consumer = Consumer(actor, self._next if self._consumers else self._first)
        self._consumers.append(consumer)
        self.actors.append(actor)
        try:
            while not self.closed:
                if consumer.cursor >= self._next:
                    await self._changed.wait()
                    continue
                start = consumer.cursor - self._first
                batch: list[bytes] = []
                ended = False
                for item in itertools.islice(self._items, start, None):
                    consumer.cursor += 1
                    if item is _END or not item:
                        ended = True
                        break
                    batch.append(item)
                self._trim()
                self._notify()
                if batch:
                    yield b"".join(batch)
                if ended:
                    return
        finally:
            self._consumers.remove(consumer)
            self.actors.remove(actor)
            self._trim()
            self._notify()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "topic": self.name,
            "contentType": self.content_type,
            "actors": [a.to_json() for a in self.actors],
            "buffered": self._size,
        }
        providers = [a.id for a in self.actors if a.role == "provider" and a.type == "instance"]
        if providers:
            body["localProvider"] = providers[0]
        return body


class TopicRouter:
    """All topics by name; a topic is created by its first producer or consumer and then kept."""

    def __init__(self, max_bytes: int = DEFAULT_TOPIC_BYTES) -> None:
        self.topics: dict[str, Topic] = {}
        self.max_bytes = max_bytes

    def get(self, name: str, content_type: str | None = None) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            # canonical, not normalized: a text charset other than UTF-8 stays (the readers need it)
            ct = canonical_content_type(content_type) if content_type else NDJSON
            topic = self.topics[name] = Topic(name, ct, self.max_bytes)
        return topic

    async def produce(self, name: str, chunks: AsyncIterator[bytes], actor: Actor,
                      content_type: str | None = None, end: bool = False) -> int:
        """Publish a producer's byte stream as items; end the topic afterwards if ``end``. Returns bytes."""
        topic = self.get(name, content_type)
        splitter = LineSplitter(topic.content_type)
        topic.actors.append(actor)
        total = 0
        try:
            async for chunk in chunks:
                total += len(chunk)
                await topic.publish(splitter.feed(chunk))
            await topic.publish(splitter.flush())
            if end:
                topic.end()
        finally:
            topic.actors.remove(actor)
        return total

    def close(self) -> None:
        """End every consumer (the hub shuts down)."""
        for topic in self.topics.values():
            topic.closed = True
            topic._notify()

    def list(self) -> list[dict[str, Any]]:
        return [topic.to_json() for topic in self.topics.values()]
