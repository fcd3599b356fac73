"""Calling ``run(context, input, *args)`` in every shape Python authors write.

``start_sequence`` calls the entry point, awaits what needs awaiting, and turns
whatever came back into one async iterator of output BATCHES (lists of items):

* async generator / any async iterable (including a scramjet-framework-py
  ``Stream``, checked *before* awaitability since ``Stream.__await__`` raises);
* sync generator / any iterable (iterated on the event loop in slices of up to
  ``BATCH_MAX_ITEMS`` items or ``BATCH_MAX_SECONDS``, yielding to the loop
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
(up to ``ABATCH_MAX_ITEMS`` items or ``BATCH_MAX_SECONDS``, the clock read every
``CLOCK_STRIDE`` items).
"""

from __future__ import annotations

import asyncio
import inspect
import numbers
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import compat
from .content import TEXT, normalize_content_type

__all__ = [
    "ABATCH_MAX_ITEMS",
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

_STREAM_HINT_NAMES = frozenset(
    {"map", "each", "filter", "flatmap", "batch", "sequence", "decode", "pipe", "to_list", "write_to", "reduce", "use"}
)

_ONCE_TYPES: tuple[type, ...] = (str, bytes, bytearray, memoryview, dict, numbers.Number)


# --------------------------------------------------------------------------- input


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


async def _abatches(ait: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
    """Batch an async iterator: one awaited item plus whatever is ready at once."""
    anext_: Callable[[], Any] = ait.__anext__
    pending: Any = None  # an __anext__ awaitable that still has to run on the loop
    mono = time.monotonic
    max_s = BATCH_MAX_SECONDS
    max_items = ABATCH_MAX_ITEMS
    stride = CLOCK_STRIDE
    steppable: type | None = None
    try:
        while True:
            try:
                item = await (pending if pending is not None else anext_())
            except StopAsyncIteration:
                return
            pending = None
            batch = [item]
            append = batch.append
            n = 1  # items in the batch
            deadline = mono() + max_s
            error: BaseException | None = None
            while n < max_items:
                aw = anext_()
                if type(aw) is not steppable:
                    if not hasattr(aw, "send"):
                        pending = aw  # a plain awaitable (e.g. a Future): await it later
                        break
                    steppable = type(aw)  # e.g. an async generator's asend: step it with send()
                try:
                    yielded = aw.send(None)
                except StopIteration as e:
                    append(e.value)
                    n += 1
                    # the clock every CLOCK_STRIDE items, not per item: reading it costs about
                    # as much as a tenth of the rest of a pass-through item's work here
                    if not n % stride and mono() > deadline:
                        break
                    continue
                except StopAsyncIteration:
                    yield batch
                    return
                except BaseException as e:  # noqa: BLE001 - re-raised after the batch is out
                    error = e
                    break
                pending = _Resumed(aw, yielded)
                break
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
    while True:
        batch: list[Any] = []
        append = batch.append
        start = mono()
        exhausted = True
        error: BaseException | None = None
        try:
            for item in it:
                append(item)
                if len(batch) >= max_items or mono() - start > BATCH_MAX_SECONDS:
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
    if isinstance(result, _ONCE_TYPES):
        return _once(result)
    if hasattr(result, "write_to") and callable(result.write_to):
        return _write_to_batches(result)
    if isinstance(result, Iterable):
        return _sbatches(result)
    return _once(result)


async def _resolve(result: Any) -> Any:
    """Await coroutines/awaitables (never stream objects) until a final value remains."""
    while not _is_async_iterable(result) and inspect.isawaitable(result):
        result = await result
    return result


# --------------------------------------------------------------------------- run


@dataclass
class SequenceRun:
    """What ``run()`` produced.

    ``output``: batches of output items, None when there is no output.
    ``content_type``: output content type (result's ``content_type``/``contentType``/
    ``provides`` → module ``provides['contentType']`` → legacy ``output_type`` →
    text/plain), normalised.
    ``provides``/``requires``: topics ("" when none), for PANG.
    ``input_content_type``: from a ``requires`` declaration (module, result or
    pipeline descriptor) when there is one, else None.
    """

    output: AsyncIterator[list[Any]] | None
    content_type: str = TEXT
    provides: str = ""
    requires: str = ""
    input_content_type: str | None = None
    result: Any = None
    input: SequenceInput | None = field(default=None, repr=False)


def _topic_and_type(value: Any, key: str) -> tuple[str | None, str | None]:
    """A ``provides``/``requires`` value: a topic string, or a dict with the topic and contentType."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        topic = value.get(key)
        ct = value.get("contentType") or value.get("content_type")
        return (topic if isinstance(topic, str) else None), (ct if isinstance(ct, str) and ct else None)
    return None, None


def _result_attr(result: Any, *names: str) -> Any:
    if result is None or isinstance(result, (SequenceInput, *_ONCE_TYPES)):
        return None
    for n in names:
        try:
            v = getattr(result, n, None)
        except Exception:  # noqa: BLE001 - exotic objects; treat as absent
            v = None
        if v is not None and not callable(v):
            return v
    return None


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
    descriptor: dict[str, Any] | None = None
    if isinstance(entry, (list, tuple)):
        funcs = list(entry)
        if funcs and isinstance(funcs[0], dict):
            descriptor = funcs.pop(0)
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

    # content type and topics
    module_provides = getattr(seq, "provides", None)
    module_requires = getattr(seq, "requires", None)
    p_topic, p_ct = _topic_and_type(module_provides, "provides")
    r_topic, r_ct = _topic_and_type(module_requires, "requires")
    if descriptor is not None:
        d_topic, d_ct = _topic_and_type(descriptor, "requires")
        r_topic, r_ct = d_topic or r_topic, d_ct or r_ct

    res_ct = _result_attr(result, "content_type", "contentType")
    res_p_topic, res_p_ct = _topic_and_type(_result_attr(result, "provides"), "provides")
    res_topic = _result_attr(result, "topic")
    res_r_topic, res_r_ct = _topic_and_type(_result_attr(result, "requires"), "requires")

    ct = (
        (res_ct if isinstance(res_ct, str) and res_ct else None)
        or res_p_ct
        or p_ct
        or getattr(seq, "output_type", None)
        or TEXT
    )
    provides = res_p_topic or (res_topic if isinstance(res_topic, str) else None) or p_topic or ""
    requires = res_r_topic or r_topic or ""
    input_ct = res_r_ct or r_ct

    output = batches_from_result(result)
    if output is not None:
        output = _surface_input_error(output, first_input)
    return SequenceRun(
        output=output,
        content_type=normalize_content_type(ct),
        provides=provides,
        requires=requires,
        input_content_type=normalize_content_type(input_ct) if input_ct else None,
        result=result,
        input=first_input,
    )
