"""Calling ``run(context, input, *args)`` in every shape Python authors write.

``start_sequence`` calls the entry point, awaits what needs awaiting, and turns
whatever came back into one async iterator of output BATCHES (lists of items):

* async generator / any async iterable (including a scramjet-framework-py
  ``Stream``, checked *before* awaitability since ``Stream.__await__`` raises);
* sync generator / any iterable (iterated on the event loop in slices of up to
  ``BATCH_MAX_ITEMS`` items, ``BATCH_MAX_BYTES`` or ``BATCH_MAX_SECONDS``, yielding to the loop
  between slices; a generator that blocks inside blocks the loop like any sync
  code does);
* a coroutine (or other awaitable), awaited, whose result is treated the same;
* an object with ``write_to(target)`` but no ``__aiter__`` (old Stream-likes);
* ``str``/``bytes``/numbers/dicts/other objects: written once;
* ``None``: no output (``SequenceRun.output is None``);
* ``run = [f, g, h]``: a pipeline; each function gets the previous output as its
  ``input`` (and the same ``args``); a leading dict ``{"requires", "contentType"}``
  (STH-Node's descriptor) is honoured.

``start_sequence`` is ``async``: it returns once ``run()`` has *produced its
result*. For ``async def run`` that sleeps forever that is never; the runner
runs it as a task and cancels it on stop/kill ("the instance lives until run()
finishes"). Exceptions from ``run()`` propagate.

Batches from async iterators: after each item that needed the event loop, the
items the iterator can produce *without suspending* are collected into the same
batch (the iterator's ``__anext__`` is stepped synchronously; the first step
that would suspend is handed to the event loop unchanged). So
``async for line in input: yield f(line)`` moves whole input batches at once
(up to ``ABATCH_MAX_ITEMS`` items, ``BATCH_MAX_BYTES`` or ``BATCH_MAX_SECONDS``, the clock
read and the size estimated every ``CLOCK_STRIDE`` items).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import Any

from ..protocol.records import Record, checked_as
from .awaitable import is_awaitable
from .content import TEXT, canonical_content_type, normalize_content_type
from .inputs import SequenceInput, _no_batches
from .topics import declared_topics, is_number

__all__ = [
    "ABATCH_MAX_ITEMS",
    "BATCH_MAX_BYTES",
    "BATCH_MAX_ITEMS",
    "BATCH_MAX_SECONDS",
    "SequenceInput",
    "SequenceRun",
    "batches_from_result",
    "start_sequence",
]

#: most items per output batch of a sync iterable (each slice blocks the loop while it is made)
BATCH_MAX_ITEMS = 256
#: most items per output batch of an async iterator: they were all ready without suspending
#: (e.g. one input batch passed through), so larger batches only save per-batch work (the
#: output pump, the transport, a frame each) and BATCH_MAX_SECONDS still bounds the wait
ABATCH_MAX_ITEMS = 1024
#: a batch is handed on once collecting it took this long (slow producers)
BATCH_MAX_SECONDS = 0.005
#: async iterators: the batch's clock is read every this many items (a batch of slow items
#: may hold up to CLOCK_STRIDE - 1 more of them past BATCH_MAX_SECONDS)
CLOCK_STRIDE = 8
#: a batch is handed on once its str and bytes-like items hold this many bytes (async iterators:
#: estimated from one item of every CLOCK_STRIDE, as CLOCK_STRIDE items of its size), so a Sequence
#: that yields large items faster than the host reads is held back by OUT's window after a few
#: of them, not after a whole batch (ABATCH_MAX_ITEMS of 64 KiB: 64 MiB held while nobody read)
BATCH_MAX_BYTES = 1 << 20
_SIZED = frozenset((bytes, str, bytearray, memoryview))


#: written once, as are numbers (topics.is_number: numbers is not imported for them)
_ONCE_TYPES: tuple[type, ...] = (str, bytes, bytearray, memoryview, dict, int, float, complex)


# --------------------------------------------------------------------------- batching


def _resume(coro: Any, first: Any) -> Generator[Any, Any, Any]:
    """Continue, under the current task, a coroutine whose first step already yielded ``first``."""
    to_yield = first
    while True:
        try:
            sent = yield to_yield
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - forwarded into the coroutine
            try:
                to_yield = coro.throw(exc)
            except StopIteration as e:
                return e.value
            continue
        try:
            to_yield = coro.send(sent)
        except StopIteration as e:
            return e.value


class _Resumed:
    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        return _resume(self.coro, self.first)


async def _throw_exit(coro: Any) -> None:
    try:
        yielded = coro.throw(GeneratorExit())
    except (GeneratorExit, StopIteration, StopAsyncIteration, RuntimeError):
        return
    try:  # it awaits inside its cleanup: let that finish on the loop
        await _Resumed(coro, yielded)
    except (GeneratorExit, StopAsyncIteration, RuntimeError):
        pass


#: what _step_ready returns when the iterator ended
_ENDED = object()


def _step_ready(aw: Any, anext_: Callable[[], Any], batch: list[Any], deadline: float) -> tuple[Any, Any]:
    """Step ``aw`` (a steppable ``__anext__`` awaitable) and the ones after it while they complete
    without suspending, appending their items to ``batch`` (up to ABATCH_MAX_ITEMS; the clock
    every CLOCK_STRIDE items).

    Returns (rest, error): rest is what is left to await on the loop (the step that suspended, as
    a _Resumed, or a plain awaitable such as a Future), _ENDED when the iterator ended (also when
    ``__anext__`` itself raised StopAsyncIteration, as ``async for`` allows), else None; error is
    what a step or ``__anext__`` raised. Each ready item is a StopIteration caught at the very
    start of this short function, on purpose: CPython 3.11 up to 3.11.4 or so (Debian bookworm's
    3.11.2, the runner image's) computes the line number of the frame an exception is raised in
    by scanning its code from the start, which deep inside _abatches cost more than the rest of
    a pass-through item (docs/deploy.md)."""
    n = len(batch)
    stride = CLOCK_STRIDE
    size = 0  # bytes so far, estimated from one item of every stride
    append = batch.append
    kind = type(aw)
    while True:
        try:
            yielded = aw.send(None)
        except StopIteration as e:
            append(e.value)
        except StopAsyncIteration:
            return _ENDED, None
        except BaseException as e:  # noqa: BLE001 - re-raised after the batch is out
            return None, e
        else:
            return _Resumed(aw, yielded), None
        n += 1
        if not n % stride:
            if n >= ABATCH_MAX_ITEMS or time.monotonic() > deadline:
                return None, None
            # One item stands for the stride (summing all 8 cost 100-byte lines 16%); which one
            # turns with each stride, so items whose sizes repeat with the stride (seven large,
            # one small) are sampled at every place instead of always at the small one.
            sample = batch[~(n // stride % stride)]
            if type(sample) in _SIZED:
                size += len(sample) * stride
                if size >= BATCH_MAX_BYTES:
                    return None, None
        try:
            aw = anext_()
        except StopAsyncIteration:
            return _ENDED, None
        except BaseException as e:  # noqa: BLE001 - re-raised after the batch is out
            return None, e
        if type(aw) is not kind:
            if not hasattr(aw, "send"):
                return aw, None  # awaited on the loop
            kind = type(aw)


async def _abatches(ait: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
    """Batch an async iterator: one awaited item plus whatever is ready at once (_step_ready)."""
    anext_: Callable[[], Any] = ait.__anext__
    pending: Any = None  # an __anext__ awaitable that still has to run on the loop
    try:
        while True:
            try:
                item = await (pending if pending is not None else anext_())
            except StopAsyncIteration:
                return
            batch = [item]
            pending, error = None, None
            try:
                aw = anext_()
            except StopAsyncIteration:
                pending = _ENDED
            except BaseException as e:  # noqa: BLE001 - re-raised after the batch is out
                error = e
            else:
                if hasattr(aw, "send"):  # e.g. an async generator's asend: step it with send()
                    pending, error = _step_ready(aw, anext_, batch, time.monotonic() + BATCH_MAX_SECONDS)
                else:
                    pending = aw  # a plain awaitable (e.g. a Future): await it later
            if pending is _ENDED:
                pending = None
                yield batch
                return
            yield batch
            if error is not None:
                raise error
    finally:
        if isinstance(pending, _Resumed):
            # the Sequence's generator is suspended inside a step we started: end that
            # step with GeneratorExit so its cleanup runs (asend.close() would not)
            await _throw_exit(pending.coro)
        # closing the output early (stop, error downstream) closes the Sequence's generator
        aclose = getattr(ait, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except RuntimeError:  # "asynchronous generator is already running"
                pass


async def _sbatches(iterable: Iterable[Any]) -> AsyncIterator[list[Any]]:
    """Batch a sync iterable on the loop, yielding to the loop between slices."""
    if isinstance(iterable, (list, tuple)):
        seq = iterable
        for i in range(0, len(seq), BATCH_MAX_ITEMS):
            yield list(seq[i : i + BATCH_MAX_ITEMS])
            await asyncio.sleep(0)
        return
    it = iter(iterable)
    mono = time.monotonic
    max_items = BATCH_MAX_ITEMS
    sized = _SIZED
    while True:
        batch: list[Any] = []
        append = batch.append
        start = mono()
        size = 0
        exhausted = True
        error: BaseException | None = None
        try:
            for item in it:
                append(item)
                if type(item) in sized:
                    size += len(item)
                if len(batch) >= max_items or size >= BATCH_MAX_BYTES or mono() - start > BATCH_MAX_SECONDS:
                    exhausted = False
                    break
        except BaseException as e:  # noqa: BLE001 - re-raised after the batch is out
            error = e
        if batch:
            yield batch
        if error is not None:
            raise error
        if exhausted:
            return
        await asyncio.sleep(0)


async def _write_to_batches(obj: Any) -> AsyncIterator[list[Any]]:
    """Output of an object that only offers ``await obj.write_to(target)``."""
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(BATCH_MAX_ITEMS)

    class _Target:
        async def write(self, chunk: Any) -> None:
            await queue.put((False, chunk))

    async def drive() -> None:
        try:
            await obj.write_to(_Target())
        finally:
            await queue.put((True, None))

    task = asyncio.ensure_future(drive())
    try:
        while True:
            done, item = await queue.get()
            if done:
                break
            batch = [item]
            while not queue.empty():
                done, item = queue.get_nowait()
                if done:
                    yield batch
                    await task  # re-raises write_to's error
                    return
                batch.append(item)
            yield batch
        await task
    finally:
        if not task.done():
            task.cancel()


async def _surface_input_error(
    output: AsyncIterator[list[Any]], inp: SequenceInput
) -> AsyncIterator[list[Any]]:
    """Re-raise an input error that a scramjet Stream view of ``input`` swallowed."""
    try:
        async for batch in output:
            yield batch
    finally:
        aclose = getattr(output, "aclose", None)
        if aclose is not None:
            await aclose()
    if inp.error is not None and inp._stream is not None:
        raise inp.error


async def _once(value: Any) -> AsyncIterator[list[Any]]:
    yield [value]


def _is_async_iterable(obj: Any) -> bool:
    return hasattr(type(obj), "__aiter__")


def batches_from_result(result: Any) -> AsyncIterator[list[Any]] | None:
    """Output batches for an already-awaited ``run()`` result; None means no output."""
    if result is None:
        return None
    if isinstance(result, SequenceInput):
        taken = result.take_batches()
        if taken is not None:
            return taken
        return _abatches(result.__aiter__())
    if _is_async_iterable(result):
        return _abatches(result.__aiter__())
    if isinstance(result, _ONCE_TYPES) or is_number(result):
        return _once(result)
    if hasattr(result, "write_to") and callable(result.write_to):
        return _write_to_batches(result)
    if isinstance(result, Iterable):
        return _sbatches(result)
    return _once(result)


async def _resolve(result: Any) -> Any:
    """Await coroutines/awaitables (never stream objects) until a final value remains."""
    while not _is_async_iterable(result) and is_awaitable(result):
        result = await result
    return result


# --------------------------------------------------------------------------- run


@checked_as()
class SequenceRun(Record):
    """What ``run()`` produced.

    ``output``: batches of output items, None when there is no output.
    ``content_type``: output content type (result's ``content_type``/``contentType``/
    ``provides`` → module ``provides['contentType']`` → legacy ``output_type`` →
    text/plain), normalised (a charset other than UTF-8 is kept: it is honoured).
    ``provides``/``requires``: topics ("" when none), for PANG.
    ``input_content_type``: from a ``requires`` declaration (module, result or
    pipeline descriptor) when there is one, else None.

    Written by hand, as the dataclass it was (runner/protocol/records.py): this module is imported
    after the Sequence's directory leads sys.path, so it must not be the first to import
    dataclasses (a Sequence's own dataclasses.py or copy.py would be taken instead).
    """

    __match_args__ = ("output", "content_type", "provides", "requires", "input_content_type", "result", "input")
    output: AsyncIterator[list[Any]] | None
    content_type: str
    provides: str
    requires: str
    input_content_type: str | None
    result: Any
    input: SequenceInput | None

    def __init__(self, output: AsyncIterator[list[Any]] | None, content_type: str = TEXT, provides: str = "",
                 requires: str = "", input_content_type: str | None = None, result: Any = None,
                 input: SequenceInput | None = None) -> None:
        self.output = output
        self.content_type = content_type
        self.provides = provides
        self.requires = requires
        self.input_content_type = input_content_type
        self.result = result
        self.input = input

    def __repr__(self) -> str:  # ``input`` is left out, as the dataclass's field(repr=False) did
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__[:-1])
        return f"{type(self).__qualname__}({shown})"


async def start_sequence(
    seq: Any, context: Any, input: AsyncIterator[list[Any]] | SequenceInput | None, args: list[Any]
) -> SequenceRun:
    """Call ``seq.entry`` (a function or a pipeline) and describe its output.

    ``seq`` is a LoadedSequence (anything with ``entry`` and optionally ``provides``,
    ``requires``, ``output_type``). ``input`` is one of:

    * a :class:`SequenceInput` the caller keeps (it may ``.attach()`` the decoded
      batches later, e.g. once ``input_content_type`` is known, or ``.mark_ended()`` it);
    * an async iterator of input BATCHES (e.g. ``decode_input(...)``), wrapped;
    * None: an input that never ends.

    Returns once ``run()`` has produced its result (see the module docstring).
    """
    entry = seq.entry
    funcs: list[Callable[..., Any]]
    if isinstance(entry, (list, tuple)):
        funcs = [f for i, f in enumerate(entry) if not (i == 0 and isinstance(f, dict))]
    else:
        funcs = [entry]
    if not funcs:
        raise ValueError("run is an empty pipeline")

    first_input = input if isinstance(input, SequenceInput) else SequenceInput(input)
    stage_input = first_input
    result: Any = None
    for i, fn in enumerate(funcs):
        result = await _resolve(fn(context, stage_input, *args))
        if i < len(funcs) - 1:
            batches = batches_from_result(result)
            stage_input = SequenceInput(batches if batches is not None else _no_batches())

    topics = declared_topics(seq, result)
    output = batches_from_result(result)
    if output is not None:
        output = _surface_input_error(output, first_input)
    return SequenceRun(
        output=output,
        content_type=canonical_content_type(topics.output_content_type or TEXT),
        provides=topics.provides,
        requires=topics.requires,
        input_content_type=normalize_content_type(topics.input_content_type) if topics.input_content_type else None,
        result=result,
        input=first_input,
    )
