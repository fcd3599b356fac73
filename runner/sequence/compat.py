"""scramjet-framework-py support, imported lazily.

Nothing here imports scramjet at module import time: a Sequence that ships its
own scramjet-framework-py in ``__pypackages__`` gets *that* one (it is imported
by the Sequence first and then found in ``sys.modules``), and Sequences that
never touch Stream methods pay nothing.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import AsyncIterable, Callable
from typing import Any

__all__ = ["is_scramjet_stream", "stream_class", "stream_from_async_iterable", "stream_method_names"]

_names_cache: dict[int, frozenset[str]] = {}
_pumps: set[asyncio.Task[Any]] = set()


def stream_class() -> type[Any] | None:
    """scramjet.streams.Stream (the one already imported if any), or None."""
    mod = sys.modules.get("scramjet.streams")
    if mod is None:
        try:
            mod = importlib.import_module("scramjet.streams")
        except ImportError:
            return None
    cls = getattr(mod, "Stream", None)
    return cls if isinstance(cls, type) else None


def is_scramjet_stream(obj: Any) -> bool:
    """True for instances of an already-imported scramjet Stream (never imports it)."""
    mod = sys.modules.get("scramjet.streams")
    cls = getattr(mod, "Stream", None) if mod is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


def stream_method_names() -> frozenset[str]:
    """Attribute names a Stream-like ``input`` delegates to a real Stream."""
    cls = stream_class()
    if cls is None:
        return frozenset()
    names = _names_cache.get(id(cls))
    if names is None:
        names = frozenset(n for n in dir(cls) if not n.startswith("__")) | {"_pyfca", "_origin", "name"}
        _names_cache[id(cls)] = names
    return names


def stream_from_async_iterable(
    source: AsyncIterable[Any],
    max_parallel: int = 64,
    on_error: Callable[[BaseException], None] | None = None,
) -> Any:
    """A scramjet Stream reading ``source``.

    ``Stream.read_from`` on an async iterable keeps a list entry per item for the
    stream's whole life (``[await write(x) async for x in it]``), so for the
    known Stream layout we pump items ourselves; otherwise we fall back to it.
    An exception from ``source`` ends the stream and goes to ``on_error`` (scramjet
    has no way to carry it downstream); without ``on_error`` it is re-raised.
    """
    cls = stream_class()
    if cls is None:
        raise RuntimeError("scramjet-framework-py is not installed; `input` supports only iteration")
    stream = cls(max_parallel)
    pyfca = getattr(stream, "_pyfca", None)
    ready = getattr(stream, "_ready_to_start", None)
    if pyfca is None or ready is None or not hasattr(pyfca, "write") or not hasattr(pyfca, "end"):
        return cls.read_from(source, max_parallel=max_parallel)

    async def pump() -> None:
        await ready
        try:
            async for item in source:
                await pyfca.write(item)
        except Exception as e:
            if on_error is None:
                raise
            on_error(e)
        finally:
            pyfca.end()

    task = asyncio.ensure_future(pump())
    _pumps.add(task)
    task.add_done_callback(_pumps.discard)
    stream._writable = False
    return stream
