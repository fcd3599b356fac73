"""``input``: what a Sequence iterates, built on batches of decoded input items."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from . import compat

__all__ = ["SequenceInput"]

_STREAM_HINT_NAMES = frozenset(
    {"map", "each", "filter", "flatmap", "batch", "sequence", "decode", "pipe", "to_list", "write_to", "reduce", "use"}
)


class SequenceInput:
    """The ``input`` a Sequence gets: an async iterable of single items.

    Built on an async iterator of BATCHES (what ``decode_input`` produces). With
    no source it never ends until :meth:`attach` (or :meth:`end`) is called, so
    the runner may create it before it knows the input content type.

    ``async for item in input`` runs one async generator that flattens batches.
    ``await input.read()`` returns the next item, or None at the end (like a
    scramjet Stream). When scramjet-framework-py is importable, any other Stream
    attribute (``input.map``, ``.each``, ``.filter``, ``.to_list``, ...) is
    delegated to a real Stream built on first use; ``Stream.read_from(input)``
    works because ``input`` is async-iterable.
    """

    def __init__(self, batches: AsyncIterator[list[Any]] | None = None) -> None:
        self._source: AsyncIterator[list[Any]] | None = batches
        self._attached: asyncio.Future[None] | None = None
        self._gen: AsyncIterator[Any] | None = None
        self._stream: Any = None
        self._taken = False  # the batch source was handed on as is (passthrough)
        #: the exception that ended the input (e.g. an InputDecodeError), if any
        self.error: BaseException | None = None

    # -- runner side
    def attach(self, batches: AsyncIterator[list[Any]]) -> None:
        """Give the input its source of batches (once)."""
        if self._source is not None:
            raise RuntimeError("input already has a source")
        self._source = batches
        if self._attached is not None and not self._attached.done():
            self._attached.set_result(None)

    def mark_ended(self) -> None:
        """End an input that has no source yet (no input will ever come).

        (Not called ``end``: that is a scramjet Stream method a Sequence may call.)
        """
        self.attach(_no_batches())

    @property
    def has_source(self) -> bool:
        return self._source is not None

    @property
    def touched(self) -> bool:
        """The Sequence iterated, read, streamed or passed on this input (at least started to)."""
        return self._gen is not None or self._stream is not None or self._taken

    # -- iteration
    async def _wait_source(self) -> AsyncIterator[list[Any]]:
        if self._source is None:
            if self._attached is None:
                self._attached = asyncio.get_running_loop().create_future()
            await self._attached
        assert self._source is not None
        return self._source

    async def _items(self) -> AsyncIterator[Any]:
        source = self._source if self._source is not None else await self._wait_source()
        try:
            async for batch in source:
                for item in batch:
                    yield item
        except Exception as e:
            self.error = e
            raise

    def _items_gen(self) -> AsyncIterator[Any]:
        if self._taken:
            raise RuntimeError("input was already consumed")
        if self._gen is None:
            self._gen = self._items()
        return self._gen

    def __aiter__(self) -> AsyncIterator[Any]:
        if self._stream is not None:
            return self._stream.__aiter__()  # type: ignore[no-any-return]
        return self._items_gen()

    def __anext__(self) -> Any:
        return self.__aiter__().__anext__()

    async def read(self) -> Any:
        """The next item, or None when the input has ended."""
        if self._stream is not None:
            return await self._stream.read()
        try:
            return await self._items_gen().__anext__()
        except StopAsyncIteration:
            return None

    def take_batches(self) -> AsyncIterator[list[Any]] | None:
        """The untouched batch source, for passing input straight to output (else None)."""
        if self._gen is not None or self._stream is not None or self._source is None or self._taken:
            return None
        self._taken = True
        return self._source

    # -- scramjet Stream compatibility
    def _set_error(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e

    def as_stream(self) -> Any:
        """The scramjet Stream view of this input (built once, on first use)."""
        if self._stream is None:
            self._stream = compat.stream_from_async_iterable(self._items_gen(), on_error=self._set_error)
        return self._stream

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in compat.stream_method_names():
            hint = ""
            if name in _STREAM_HINT_NAMES and compat.stream_class() is None:
                hint = " (Stream methods on `input` need scramjet-framework-py installed)"
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}{hint}")
        return getattr(self.as_stream(), name)

    def __repr__(self) -> str:
        state = "stream" if self._stream is not None else ("attached" if self._source else "waiting")
        return f"<SequenceInput {state}>"


async def _no_batches() -> AsyncIterator[list[Any]]:
    return
    yield  # pragma: no cover
