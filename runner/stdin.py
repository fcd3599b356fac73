"""The Sequence's ``sys.stdin``: the STDIN channel as a text file, and as STH gives it.

Two ways to read the same stream, sharing one buffer:

* the plain file API: ``read()``, ``readline()``, ``readlines()``, iteration,
  ``sys.stdin.buffer`` for bytes. It blocks the thread that calls it, as reading
  a pipe does (inside ``async def`` code that is the event loop: use the forms below);
* STH's forms, which never block the event loop: ``await sys.stdin.read()``,
  ``await sys.stdin.readline()``, ``await sys.stdin.readlines()`` and
  ``async for line in sys.stdin``. While a Sequence waits on them the loop runs
  on: events, stop handlers and health checks keep working, and cancelling the
  wait loses no input (nothing is taken from the buffer until it is returned).

``read()`` is one method with both behaviours: called as ``await
sys.stdin.read()`` from a coroutine it returns an awaitable (the call site's next
instruction is an ``await``: the caller's bytecode is looked at once per call
site), otherwise it reads. Both follow the file API's meaning: ``read()`` up to
the end of the input (``""`` at the end), ``read(n)`` up to ``n`` characters,
``readline()`` one line with its ``"\\n"``. Where the awaitable is handed on
rather than awaited at once (``asyncio.wait_for(...)``, ``gather``,
``create_task``), ``aread()``, ``areadline()`` and ``areadlines()`` name the
non-blocking forms explicitly. Text is UTF-8 with invalid bytes replaced and
universal newlines, as ``sys.stdin`` usually is.
"""

from __future__ import annotations

import asyncio
import codecs
import dis  # runs at the first `read()` whose call site needs looking at (runner/deferred_imports.py)
import io
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from types import CodeType
from typing import Any

from .sequence.awaitable import CO_ASYNC_CODE as _ASYNC_CODE

__all__ = ["StdinBuffer", "StdinText"]

_awaited_at: dict[tuple[CodeType, int], bool] = {}


def _awaited_by_caller(depth: int) -> bool:
    """Whether the call ``depth`` frames up is the operand of an ``await`` (``await x.read()``)."""
    frame = sys._getframe(depth + 1)
    code = frame.f_code
    if not code.co_flags & _ASYNC_CODE:
        return False  # only coroutines can await
    key = (code, frame.f_lasti)
    known = _awaited_at.get(key)
    if known is None:
        # f_lasti is the call (3.10) or its last inline cache entry (3.11+): the next instruction
        # after it is the one that takes the call's result
        following = next((ins for ins in dis.get_instructions(code) if ins.offset > frame.f_lasti), None)
        known = following is not None and following.opname == "GET_AWAITABLE"
        _awaited_at[key] = known
    return known


class StdinBuffer:
    """Bytes of the STDIN channel, fed by the transport's reader thread; read from any thread
    (blocking) or from an event loop (``wait_async``, never blocking it)."""

    def __init__(self, consumed: Callable[[int], None]) -> None:
        self._consumed = consumed
        self._cond = threading.Condition()
        self._chunks: list[bytes] = []
        self._eof = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.bytes = 0
        self.items = 0

    def feed(self, chunks: list[bytes]) -> None:
        with self._cond:
            self._chunks.extend(chunks)
            self.bytes += sum(map(len, chunks))
            self.items += len(chunks)
            self._wake_locked()

    def end(self) -> None:
        with self._cond:
            self._eof = True
            self._wake_locked()

    def _wake_locked(self) -> None:
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed
                pass

    def take_nowait(self) -> bytes | None:
        """Everything buffered; ``b""`` at the end of the input; None when nothing is there yet."""
        with self._cond:
            if not self._chunks:
                return b"" if self._eof else None
            data = b"".join(self._chunks)
            self._chunks.clear()
        self._consumed(len(data))
        return data

    def wait(self) -> None:
        """Block until there are bytes or the input ended."""
        with self._cond:
            while not self._chunks and not self._eof:
                self._cond.wait()

    async def wait_async(self) -> None:
        """Wait on the running loop (the loop goes on) until there are bytes or the input ended."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._chunks or self._eof:
                return
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        await future

    def readinto(self, buf: Any) -> int:
        """Blocking raw read (``sys.stdin.buffer``)."""
        with self._cond:
            while not self._chunks and not self._eof:
                self._cond.wait()
            if not self._chunks:
                return 0
            head = self._chunks[0]
            n = min(len(buf), len(head))
            buf[:n] = head[:n]
            if n == len(head):
                self._chunks.pop(0)
            else:
                self._chunks[0] = head[n:]
        self._consumed(n)
        return n


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _StdinRaw(io.RawIOBase):
    def __init__(self, source: StdinBuffer) -> None:
        super().__init__()
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        return self._source.readinto(memoryview(buf).cast("B"))


class StdinText(io.TextIOBase):
    """``sys.stdin``: the file API, ``await``-able reads and ``async for`` (module docstring)."""

    def __init__(self, source: StdinBuffer) -> None:
        super().__init__()
        self._source = source
        self._decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")("replace"),
                                                     translate=True)
        self._text = ""
        self._pos = 0  # what of _text was returned already
        self._eof = False
        self._lock = threading.Lock()
        self.buffer = io.BufferedReader(_StdinRaw(source))

    # -- the file's attributes
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    # -- one reading engine, two ways of waiting
    def _progress(self) -> bool:
        """Decode what arrived; False when nothing has (the caller waits)."""
        data = self._source.take_nowait()
        if data is None:
            return False
        decoded = self._decoder.decode(data, not data)
        self._eof = not data
        if decoded:
            # drop what was returned already, then append: each character is copied O(1) times
            self._text = self._text[self._pos:] + decoded
            self._pos = 0
        return True

    def _try(self, size: int, line: bool) -> str | None:
        """The result if it can be given now (else None), taken from the buffer."""
        with self._lock:
            while True:
                text, pos = self._text, self._pos
                end = -1
                if line:
                    newline = text.find("\n", pos)
                    if newline >= 0:
                        end = newline + 1
                if size >= 0 and len(text) - pos >= size:
                    end = pos + size if end < 0 else min(end, pos + size)
                if end < 0 and self._eof:
                    end = len(text)
                if end >= 0:
                    self._pos = end
                    return text[pos:end]
                if self._eof or not self._progress():
                    return None

    def _read_blocking(self, size: int, line: bool) -> str:
        self._check_open()
        while True:
            result = self._try(size, line)
            if result is not None:
                return result
            self._source.wait()

    async def _read_async(self, size: int, line: bool) -> str:
        self._check_open()
        while True:
            result = self._try(size, line)
            if result is not None:
                return result
            await self._source.wait_async()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    # -- the file API; awaited from a coroutine, the non-blocking form
    def read(self, size: int | None = -1) -> Any:
        n = -1 if size is None else int(size)
        if _awaited_by_caller(1):
            return self._read_async(n, line=False)
        return self._read_blocking(n, line=False)

    def readline(self, size: int | None = -1) -> Any:
        n = -1 if size is None else int(size)
        if _awaited_by_caller(1):
            return self._read_async(n, line=True)
        return self._read_blocking(n, line=True)

    def readlines(self, hint: int = -1) -> Any:
        if _awaited_by_caller(1):
            return self._readlines_async(hint)
        lines: list[str] = []
        total = 0
        while line := self._read_blocking(-1, line=True):
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    async def _readlines_async(self, hint: int) -> list[str]:
        lines: list[str] = []
        total = 0
        while line := await self._read_async(-1, line=True):
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    # -- the awaitable forms by name, to hand to asyncio.wait_for()/gather()/create_task()
    def aread(self, size: int | None = -1) -> Coroutine[Any, Any, str]:
        return self._read_async(-1 if size is None else int(size), line=False)

    def areadline(self, size: int | None = -1) -> Coroutine[Any, Any, str]:
        return self._read_async(-1 if size is None else int(size), line=True)

    def areadlines(self, hint: int = -1) -> Coroutine[Any, Any, list[str]]:
        return self._readlines_async(hint)

    def __iter__(self) -> StdinText:  # type: ignore[override]
        return self

    def __next__(self) -> str:  # type: ignore[override]
        line = self._read_blocking(-1, line=True)
        if not line:
            raise StopIteration
        return line

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while line := await self._read_async(-1, line=True):
            yield line
