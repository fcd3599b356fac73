"""runner.sequence.shapes: every run() shape, pipelines, topics/content types, scramjet Streams."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runner.sequence import shapes
from runner.sequence.content import InputDecodeError, decode_input, output_encoder
from runner.sequence.context import AppContext
from runner.sequence.loader import load_sequence
from runner.sequence.shapes import SequenceInput, SequenceRun, start_sequence

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).resolve().parents[2] / "sample_sequences"

scramjet_streams = pytest.importorskip("scramjet.streams")
Stream = scramjet_streams.Stream


@pytest.fixture
def ctx(fake_backend: Any, seq_logger: logging.Logger) -> AppContext:
    return AppContext(fake_backend, config={}, instance_id="i", logger=seq_logger)


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    cwd = os.getcwd()
    path = list(sys.path)
    yield
    os.chdir(cwd)
    sys.path[:] = path


async def batches_of(items: list[Any], size: int = 2) -> AsyncIterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def seq_of(entry: Any, **kw: Any) -> Any:
    return SimpleNamespace(entry=entry, provides=kw.get("provides"), requires=kw.get("requires"),
                           output_type=kw.get("output_type"))


async def collect(run: SequenceRun) -> list[Any]:
    assert run.output is not None
    return [x async for b in run.output for x in b]


async def run_entry(ctx: AppContext, entry: Any, items: list[Any] | None = None, args: list[Any] | None = None,
                    **kw: Any) -> SequenceRun:
    inp = batches_of(items) if items is not None else None
    return await start_sequence(seq_of(entry, **kw), ctx, inp, args or [])


# ------------------------------------------------------------------ shapes


async def test_async_generator(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> AsyncIterator[str]:
        async for x in input:
            yield x.upper()

    r = await run_entry(ctx, run, ["a", "b", "c"])
    assert await collect(r) == ["A", "B", "C"]
    assert r.content_type == "text/plain" and r.provides == "" and r.requires == ""


async def test_sync_generator(ctx: AppContext) -> None:
    def run(context: Any, input: Any, n: int) -> Iterator[int]:
        yield from range(n)

    r = await run_entry(ctx, run, args=[1000])
    assert await collect(r) == list(range(1000))


async def test_sync_generator_batched_in_slices(ctx: AppContext) -> None:
    r = await run_entry(ctx, lambda c, i: iter(range(1000)))
    assert r.output is not None
    sizes = [len(b) async for b in r.output]
    assert sum(sizes) == 1000 and max(sizes) <= shapes.BATCH_MAX_ITEMS and len(sizes) >= 4


async def test_list_and_tuple_results(ctx: AppContext) -> None:
    assert await collect(await run_entry(ctx, lambda c, i: [1, 2, 3])) == [1, 2, 3]
    assert await collect(await run_entry(ctx, lambda c, i: ("a",))) == ["a"]
    assert await collect(await run_entry(ctx, lambda c, i: [])) == []


async def test_coroutine_returning_values(ctx: AppContext) -> None:
    async def gen() -> AsyncIterator[int]:
        yield 1
        yield 2

    async def ret_agen(c: Any, i: Any) -> Any:
        return gen()

    async def ret_list(c: Any, i: Any) -> Any:
        return [3, 4]

    async def ret_str(c: Any, i: Any) -> Any:
        return "once"

    async def ret_none(c: Any, i: Any) -> None:
        await asyncio.sleep(0)

    assert await collect(await run_entry(ctx, ret_agen)) == [1, 2]
    assert await collect(await run_entry(ctx, ret_list)) == [3, 4]
    assert await collect(await run_entry(ctx, ret_str)) == ["once"]
    assert (await run_entry(ctx, ret_none)).output is None


@pytest.mark.parametrize("value", ["text", b"bytes", 42, 1.5, {"a": 1}, True])
async def test_plain_function_values_written_once(ctx: AppContext, value: Any) -> None:
    assert await collect(await run_entry(ctx, lambda c, i: value)) == [value]


async def test_plain_function_none_no_output(ctx: AppContext) -> None:
    assert (await run_entry(ctx, lambda c, i: None)).output is None


async def test_plain_function_returning_async_iterable_object(ctx: AppContext) -> None:
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def __aiter__(self) -> Counter:
            return self

        async def __anext__(self) -> int:
            self.n += 1
            if self.n > 3:
                raise StopAsyncIteration
            return self.n

    assert await collect(await run_entry(ctx, lambda c, i: Counter())) == [1, 2, 3]


async def test_write_to_only_object(ctx: AppContext) -> None:
    class Legacy:
        async def write_to(self, target: Any) -> Any:
            for x in ("a", "b", "c"):
                await target.write(x)
            return target

    assert await collect(await run_entry(ctx, lambda c, i: Legacy())) == ["a", "b", "c"]


async def test_echo_input_passthrough(ctx: AppContext) -> None:
    r = await run_entry(ctx, lambda c, i: i, ["x", "y", "z"])
    assert r.output is not None
    assert [b async for b in r.output] == [["x", "y"], ["z"]]  # batches handed on untouched


async def test_args_passed_positionally(ctx: AppContext) -> None:
    def run(c: Any, i: Any, a: Any, b: Any = "dflt") -> str:
        return f"{a}-{b}"

    assert await collect(await run_entry(ctx, run, args=["foo"])) == ["foo-dflt"]
    assert await collect(await run_entry(ctx, run, args=["foo", 3])) == ["foo-3"]


async def test_context_is_passed(ctx: AppContext) -> None:
    assert await collect(await run_entry(ctx, lambda c, i: c.instance_id)) == ["i"]


# ------------------------------------------------------------------ batching and errors


async def test_async_generator_batches_ready_items(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> AsyncIterator[str]:
        async for x in input:
            yield x

    r = await run_entry(ctx, run, [str(i) for i in range(100)], args=None)
    assert r.output is not None
    # the input arrives in batches of 2, ready at once: all of it moves in few batches
    sizes = [len(b) async for b in r.output]
    assert sum(sizes) == 100 and len(sizes) < 10


async def test_async_iterator_mixing_coroutines_and_futures_keeps_every_item_in_order(ctx: AppContext) -> None:
    """__anext__ returns a coroutine (stepped by the batcher) or a Future (awaited on the loop)."""

    class Mixed:
        def __init__(self) -> None:
            self.n = 0

        def __aiter__(self) -> Mixed:
            return self

        def __anext__(self) -> Any:
            self.n += 1
            if self.n > 50:
                raise StopAsyncIteration
            if self.n % 3:
                return self._ready(self.n)
            future = asyncio.get_running_loop().create_future()
            future.set_result(self.n)
            return future

        async def _ready(self, n: int) -> int:
            return n

    assert await collect(await run_entry(ctx, lambda c, i: Mixed())) == list(range(1, 51))


async def test_an_error_after_ready_items_comes_after_them(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> AsyncIterator[int]:
        yield 1
        yield 2  # ready at once: in the same batch as 1
        raise ValueError("third")

    r = await run_entry(ctx, run)
    assert r.output is not None
    got: list[int] = []
    with pytest.raises(ValueError, match="third"):
        async for batch in r.output:
            got.extend(batch)
    assert got == [1, 2]


async def test_ready_items_are_cut_into_batches_of_at_most_abatch_max_items(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> AsyncIterator[int]:
        for i in range(3000):
            yield i  # never suspends

    r = await run_entry(ctx, run)
    assert r.output is not None
    batches = [b async for b in r.output]
    assert [x for b in batches for x in b] == list(range(3000))
    assert max(map(len, batches)) <= shapes.ABATCH_MAX_ITEMS and len(batches) >= 3


@pytest.mark.parametrize("small_at", range(shapes.CLOCK_STRIDE))
async def test_ready_large_items_are_cut_by_bytes_whatever_the_pattern_of_their_sizes(ctx: AppContext,
                                                                                       small_at: int) -> None:
    """Sizes are estimated from one item per CLOCK_STRIDE: seven large items and one small one,
    repeating with the stride, must not pass for small ones wherever the small one sits."""
    large = 16 * 1024
    count = 2000

    async def run(context: Any, input: Any) -> AsyncIterator[bytes]:
        for i in range(count):
            yield b"s" if i % shapes.CLOCK_STRIDE == small_at else bytes(large)  # never suspends

    r = await run_entry(ctx, run)
    assert r.output is not None
    batches = [b async for b in r.output]
    assert sum(map(len, batches)) == count
    largest = max(sum(map(len, b)) for b in batches)
    # the estimate trails the truth by at most a stride or two of large items
    assert largest <= shapes.BATCH_MAX_BYTES + 4 * shapes.CLOCK_STRIDE * large, largest


async def test_async_generator_that_really_suspends(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> AsyncIterator[int]:
        for i in range(5):
            await asyncio.sleep(0.001)
            yield i
            yield -i

    assert await collect(await run_entry(ctx, run)) == [0, 0, 1, -1, 2, -2, 3, -3, 4, -4]


async def test_items_before_an_exception_are_delivered(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> AsyncIterator[str]:
        yield "about to fail\n"
        yield "second\n"
        raise RuntimeError("This exception should appear on stderr")

    r = await run_entry(ctx, run)
    assert r.output is not None
    got: list[Any] = []
    with pytest.raises(RuntimeError, match="appear on stderr"):
        async for b in r.output:
            got.extend(b)
    assert got == ["about to fail\n", "second\n"]


async def test_sync_generator_items_before_exception(ctx: AppContext) -> None:
    def run(context: Any, input: Any) -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("sync boom")

    r = await run_entry(ctx, run)
    assert r.output is not None
    got: list[Any] = []
    with pytest.raises(ValueError, match="sync boom"):
        async for b in r.output:
            got.extend(b)
    assert got == [1, 2]


async def test_exception_in_run_propagates(ctx: AppContext) -> None:
    def run(c: Any, i: Any) -> None:
        raise KeyError("at call")

    with pytest.raises(KeyError):
        await run_entry(ctx, run)


async def test_closing_output_early_closes_generator(ctx: AppContext) -> None:
    closed: list[bool] = []

    async def run(context: Any, input: Any) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                await asyncio.sleep(0)
                yield i
                i += 1
        finally:
            closed.append(True)

    r = await run_entry(ctx, run)
    assert r.output is not None
    out = r.output
    async for _b in out:
        break
    await out.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    assert closed == [True]


# ------------------------------------------------------------------ input


async def test_input_never_ends_without_source(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> AsyncIterator[Any]:
        async for x in input:
            yield x

    r = await run_entry(ctx, run)
    assert r.output is not None
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(r.output.__anext__(), 0.05)


async def test_input_attached_later_and_end(ctx: AppContext) -> None:
    inp = SequenceInput()

    async def run(context: Any, input: Any) -> AsyncIterator[Any]:
        async for x in input:
            yield x

    r = await start_sequence(seq_of(run), ctx, inp, [])
    assert r.input is inp and r.output is not None
    task = asyncio.ensure_future(collect(r))
    await asyncio.sleep(0.01)
    assert not task.done()
    inp.attach(batches_of([1, 2, 3]))
    assert await asyncio.wait_for(task, 2) == [1, 2, 3]

    inp2 = SequenceInput()
    r2 = await start_sequence(seq_of(run), ctx, inp2, [])
    inp2.mark_ended()
    assert await collect(r2) == []
    with pytest.raises(RuntimeError):
        inp2.attach(batches_of([]))


async def test_input_read(ctx: AppContext) -> None:
    inp = SequenceInput(batches_of(["a", "b"]))
    assert await inp.read() == "a"
    assert await inp.read() == "b"
    assert await inp.read() is None


async def test_input_decode_error_reaches_sequence(ctx: AppContext) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"1\n{bad\n"

    async def run(context: Any, input: Any) -> AsyncIterator[Any]:
        async for x in input:
            yield x

    r = await start_sequence(seq_of(run), ctx, decode_input("application/x-ndjson", chunks()), [])
    got: list[Any] = []
    assert r.output is not None
    with pytest.raises(InputDecodeError, match="line 2"):
        async for b in r.output:
            got.extend(b)
    assert got == [1]


async def test_input_getattr_does_not_build_stream_for_unknown_names() -> None:
    inp = SequenceInput(batches_of([1]))
    assert getattr(inp, "content_type", None) is None
    assert inp._stream is None
    with pytest.raises(AttributeError):
        inp.definitely_not_a_stream_method  # noqa: B018


# ------------------------------------------------------------------ scramjet Stream


async def test_input_stream_methods(ctx: AppContext) -> None:
    def run(context: Any, input: Any) -> Any:
        return input.map(lambda s: s * 2).filter(lambda s: s != "bb")

    assert await collect(await run_entry(ctx, run, ["a", "b", "c"])) == ["aa", "cc"]


async def test_input_each_and_to_list(ctx: AppContext) -> None:
    seen: list[Any] = []

    async def run(context: Any, input: Any) -> Any:
        return await input.each(seen.append).to_list()

    assert await collect(await run_entry(ctx, run, [1, 2, 3])) == [1, 2, 3]
    assert seen == [1, 2, 3]


async def test_stream_read_from_input(ctx: AppContext) -> None:
    def run(context: Any, input: Any) -> Any:
        return Stream.read_from(input).map(lambda s: f"Hello {s.strip()}!\n")

    assert await collect(await run_entry(ctx, run, ["python runner\n"])) == ["Hello python runner!\n"]


async def test_stream_result_with_background_task(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> Any:
        stream = Stream()

        async def produce() -> None:
            for w in ("x", "y"):
                await asyncio.sleep(0.001)
                await stream.write(w)
            stream.end()

        asyncio.ensure_future(produce())
        out = stream.map(lambda s: s + "\n")
        out.provides = "topic-a"
        out.content_type = "text/plain"
        return out

    r = await run_entry(ctx, run)
    assert await collect(r) == ["x\n", "y\n"]
    assert r.provides == "topic-a"  # read from the result of an *async* run


async def test_stream_decode_error_surfaces_after_output(ctx: AppContext) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"1\n2\nnope\n"

    def run(context: Any, input: Any) -> Any:
        return input.map(lambda x: x * 10)

    r = await start_sequence(seq_of(run), ctx, decode_input("application/x-ndjson", chunks()), [])
    with pytest.raises(InputDecodeError):
        await collect(r)


async def test_input_stream_mixed_with_read(ctx: AppContext) -> None:
    async def run(context: Any, input: Any) -> Any:
        first = await input.read()
        return input.map(lambda x: (first, x))

    assert await collect(await run_entry(ctx, run, [1, 2, 3])) == [(1, 2), (1, 3)]


# ------------------------------------------------------------------ pipelines


async def test_pipeline_of_all_shapes(ctx: AppContext) -> None:
    async def parse(c: Any, inp: Any, *args: Any) -> AsyncIterator[int]:
        async for line in inp:
            if line.strip():
                yield int(line)

    def double(c: Any, inp: Any, *args: Any) -> Any:
        return inp.map(lambda n: n * 2)

    async def fmt(c: Any, inp: Any, suffix: str) -> Any:
        return (f"{n}{suffix}" async for n in inp)

    r = await run_entry(ctx, [parse, double, fmt], ["1\n", "\n", "21\n"], args=["\n"])
    assert await collect(r) == ["2\n", "42\n"]


async def test_pipeline_stage_returning_none(ctx: AppContext) -> None:
    async def consume(c: Any, inp: Any) -> AsyncIterator[int]:
        async for x in inp:
            yield x
        yield 99

    r = await run_entry(ctx, [lambda c, i: None, consume], ["ignored"])
    assert await collect(r) == [99]


async def test_pipeline_node_descriptor(ctx: AppContext) -> None:
    r = await run_entry(ctx, [{"requires": "in-topic", "contentType": "application/x-ndjson"}, lambda c, i: i], [1])
    assert r.requires == "in-topic" and r.input_content_type == "application/x-ndjson"


# ------------------------------------------------------------------ content type / topics


async def test_content_type_precedence(ctx: AppContext) -> None:
    prov = {"provides": "mod-topic", "contentType": "application/x-ndjson"}
    r = await run_entry(ctx, lambda c, i: [1], provides=prov, output_type="application/octet-stream")
    assert (r.content_type, r.provides) == ("application/x-ndjson", "mod-topic")
    r = await run_entry(ctx, lambda c, i: [1], output_type="application/octet-stream")
    assert r.content_type == "application/octet-stream"

    class Result(list[Any]):
        pass

    res = Result([b"x"])
    res.contentType = "Application/Octet-Stream; x=y"  # type: ignore[attr-defined]
    res.provides = {"provides": "res-topic"}  # type: ignore[attr-defined]
    res.requires = "req-topic"  # type: ignore[attr-defined]
    r = await run_entry(ctx, lambda c, i: res, provides=prov)
    assert (r.content_type, r.provides, r.requires) == ("application/octet-stream", "res-topic", "req-topic")


async def test_async_run_result_attributes(ctx: AppContext) -> None:
    class Out(list[Any]):
        pass

    async def run(c: Any, i: Any) -> Any:
        o = Out(["a"])
        o.provides = "late-topic"  # type: ignore[attr-defined]
        o.content_type = "application/x-ndjson"  # type: ignore[attr-defined]
        return o

    r = await run_entry(ctx, run)
    assert (r.provides, r.content_type) == ("late-topic", "application/x-ndjson")


async def test_module_requires(ctx: AppContext) -> None:
    r = await run_entry(ctx, lambda c, i: None, requires={"requires": "names", "contentType": "text/plain"})
    assert r.requires == "names" and r.input_content_type == "text/plain" and r.output is None


# ------------------------------------------------------------------ samples end to end


async def _run_sample(ctx: AppContext, name: str, data: list[bytes], ct: str = "text/plain",
                      args: list[Any] | None = None) -> tuple[SequenceRun, bytes]:
    seq = load_sequence(SAMPLES / name, chdir=False)

    async def chunks() -> AsyncIterator[bytes]:
        for d in data:
            yield d

    run = await start_sequence(seq, ctx, decode_input(ct, chunks()), args if args is not None else seq.default_args)
    enc: Callable[[list[Any]], bytes] = output_encoder(run.content_type)
    assert run.output is not None
    return run, b"".join([enc(b) async for b in run.output])


@pytest.mark.parametrize("sample", ["sth-hello", "hello"])
async def test_hello_samples(ctx: AppContext, sample: str) -> None:
    _, out = await _run_sample(ctx, sample, [b"python run", b"ner\n\xc5", b"\xbc\xc3\xb3\xc5\x82w\n"])
    assert out == "Hello python runner!\nHello żółw!\n".encode()


async def test_pipeline_sample(ctx: AppContext) -> None:
    assert (await _run_sample(ctx, "pipeline", [b"1\n21\n"]))[1] == b"2\n42\n"


async def test_ndjson_sample(ctx: AppContext) -> None:
    run, out = await _run_sample(ctx, "ndjson-transform", [b'{"a":1}\n', b"5\n"], "application/x-ndjson")
    assert run.content_type == "application/x-ndjson"
    assert out == b'{"a": 1, "seen": true, "n": 1}\n{"value": 5, "seen": true, "n": 2}\n'


async def test_binary_sample(ctx: AppContext) -> None:
    data = "foo\nbar baz\nżółw\n".encode()
    run, out = await _run_sample(ctx, "binary-passthrough", [data], "application/octet-stream")
    assert out == data and run.content_type == "application/octet-stream"


async def test_counter_sample_default_args(ctx: AppContext) -> None:
    assert (await _run_sample(ctx, "counter", []))[1] == b"1\n2\n3\n4\n5\n"


async def test_topic_samples(ctx: AppContext) -> None:
    run, out = await _run_sample(ctx, "topic-producer", [])
    assert (run.provides, run.content_type, out) == ("names", "text/plain", b"Alice\nBob\nCarol\n")
    run, out = await _run_sample(ctx, "topic-consumer", [b"Alice\n"])
    assert (run.requires, run.input_content_type, out) == ("names", "text/plain", b"Got: Alice\n")


async def test_failing_sample(ctx: AppContext) -> None:
    with pytest.raises(Exception, match="This exception should appear on stderr"):
        await _run_sample(ctx, "failing", [])


async def test_cancel_while_sequence_suspended_in_a_stepped_item(ctx: AppContext) -> None:
    events: list[str] = []

    async def run(context: Any, input: Any) -> AsyncIterator[int]:
        try:
            yield 1
            yield 2  # ready at once: stepped synchronously by the batcher
            await asyncio.sleep(30)  # the stepped __anext__ suspends here
            yield 3
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            events.append("finally")

    r = await run_entry(ctx, run)
    got: list[Any] = []

    async def consume() -> None:
        assert r.output is not None
        async for b in r.output:
            got.extend(b)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.02)
    assert got == [1, 2]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["cancelled", "finally"]


async def test_stream_methods_without_scramjet_hint(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.sequence import compat

    monkeypatch.setattr(compat, "stream_class", lambda: None)
    monkeypatch.setattr(compat, "stream_method_names", lambda: frozenset())
    inp = SequenceInput(batches_of([1]))
    with pytest.raises(AttributeError, match="need scramjet-framework-py"):
        inp.map(str)
    assert [x async for x in inp] == [1]
