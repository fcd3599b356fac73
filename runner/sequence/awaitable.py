"""``inspect.isawaitable`` and ``inspect.iscoroutine`` without running ``inspect``.

The runner asks these of every event handler's and health check's result and of run()'s;
``inspect`` (with ``ast`` and ``dis``) is ~7 ms of a cold start that a Sequence which never
uses it should not pay (runner/deferred_imports.py). Same answers as inspect's (3.10-3.13),
tests/runner/test_deferred_imports.py compares them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from types import CoroutineType, GeneratorType
from typing import Any

__all__ = ["CO_ASYNC_CODE", "CO_ITERABLE_COROUTINE", "is_awaitable", "is_coroutine"]

#: inspect.CO_ITERABLE_COROUTINE: a generator made awaitable by ``types.coroutine``
CO_ITERABLE_COROUTINE = 0x100
#: inspect.CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR: code that can ``await``
CO_ASYNC_CODE = 0x80 | CO_ITERABLE_COROUTINE | 0x200


def is_awaitable(obj: Any) -> bool:
    """What ``await obj`` accepts: a coroutine, a ``types.coroutine`` generator, or an Awaitable."""
    return (isinstance(obj, CoroutineType)
            or (isinstance(obj, GeneratorType) and bool(obj.gi_code.co_flags & CO_ITERABLE_COROUTINE))
            or isinstance(obj, Awaitable))


def is_coroutine(obj: Any) -> bool:
    """A coroutine object (what calling an ``async def`` function returns)."""
    return isinstance(obj, CoroutineType)
