"""runner.sequence.context: AppContext against a fake ContextBackend."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from runner.sequence.context import AppContext

pytestmark = pytest.mark.anyio


@pytest.fixture
def ctx(fake_backend: Any, seq_logger: logging.Logger) -> AppContext:
    return AppContext(fake_backend, config={"k": 1}, instance_id="inst-1", logger=seq_logger, exit_timeout_ms=500)


async def test_basic_attributes_and_aliases(ctx: AppContext, fake_backend: Any, seq_logger: logging.Logger) -> None:
    assert ctx.config == {"k": 1}
    assert ctx.instance_id == ctx.instanceId == "inst-1"
    assert ctx.exit_timeout == ctx.exitTimeout == 500
    ctx.exitTimeout = 700
    assert ctx.exit_timeout == 700
    assert ctx.logger is seq_logger
    assert ctx.addStopHandler == ctx.add_stop_handler
    assert ctx.keepAlive == ctx.keep_alive
    assert ctx.stop_timeout_ms is None
    fake_backend.remaining_ms = 1234.0
    assert ctx.stop_timeout_ms == 1234.0


async def test_logger_aliases(ctx: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(1, logger="test.sequence"):
        ctx.logger.warn("w")  # type: ignore[attr-defined]  # noqa: G010 - the STH alias under test
        ctx.logger.trace("t %s", 1)  # type: ignore[attr-defined]
        ctx.logger.fatal("f")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "w"), ("TRACE", "t 1"), ("CRITICAL", "f")
    ]


async def test_emit_end_destroy(ctx: AppContext, fake_backend: Any) -> None:
    ctx.emit("a")
    ctx.emit("b", {"x": 1})
    ctx.end()
    err = ValueError("bad")
    ctx.destroy(err)
    ctx.destroy()
    assert fake_backend.events == [("a", ""), ("b", {"x": 1})]
    assert fake_backend.ended == 1
    assert fake_backend.destroyed == [err, None]


async def test_keep_alive_awaitable_and_chainable(ctx: AppContext, fake_backend: Any) -> None:
    t = time.monotonic()
    assert await ctx.keep_alive(3000) is ctx
    assert time.monotonic() - t < 0.5  # never sleeps
    ctx.keepAlive(10).emit("x", 1)
    ctx.keep_alive()
    assert fake_backend.keepalives == [3000.0, 10.0, 0.0]
    assert fake_backend.events == [("x", 1)]


async def test_events_sync_async_and_errors(ctx: AppContext, fake_backend: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    got: list[Any] = []

    def sync_cb(msg: Any) -> None:
        got.append(("sync", msg))
        ctx.emit("reply", f"reply to {msg}")

    async def async_cb(msg: Any) -> None:
        await asyncio.sleep(0)
        got.append(("async", msg))

    def bad(msg: Any) -> None:
        raise RuntimeError("cb failed")

    async def bad_async(msg: Any) -> None:
        raise RuntimeError("async cb failed")

    ctx.on("e", bad).on("e", sync_cb).on("e", async_cb).on("e", bad_async)
    ctx.dispatch_event("e", "foo")
    ctx.dispatch_event("other", "ignored")
    for _ in range(5):
        await asyncio.sleep(0)
    assert got == [("sync", "foo"), ("async", "foo")]
    assert fake_backend.events == [("reply", "reply to foo")]
    text = caplog.text
    assert "cb failed" in text and "async cb failed" in text
    with pytest.raises(TypeError):
        ctx.on("e", "not callable")  # type: ignore[arg-type]


async def test_a_callback_returning_emits_chain_is_answered_at_once_without_a_task(
        ctx: AppContext, fake_backend: Any) -> None:
    """``lambda m: context.emit("pong", m)`` returns a Chain: awaitable, but done already."""
    ctx.on("ping", lambda msg: ctx.emit("pong", msg))
    before = asyncio.all_tasks()
    ctx.dispatch_event("ping", 7)
    assert fake_backend.events == [("pong", 7)]  # sent from within dispatch, before any loop turn
    assert asyncio.all_tasks() == before  # nothing was started to await the Chain
    assert await ctx.emit("again", 8) is ctx  # awaiting a Chain still gives the context


async def test_a_callback_returning_another_awaitable_is_still_awaited(ctx: AppContext) -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    awaited: list[str] = []

    async def then() -> None:
        await future
        awaited.append("done")

    ctx.on("e", lambda msg: then())
    ctx.dispatch_event("e", None)
    loop.call_soon(future.set_result, None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert awaited == ["done"]


class _NotAnException(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt (e.g. a library's own)."""


async def test_callback_base_exceptions_are_logged_and_the_next_callbacks_still_run(
        ctx: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []

    def sync_bad(msg: Any) -> None:
        raise _NotAnException("sync base")

    async def async_bad(msg: Any) -> None:
        raise _NotAnException("async base")

    ctx.on("e", sync_bad).on("e", async_bad).on("e", lambda msg: got.append(msg))
    ctx.dispatch_event("e", "after")
    for _ in range(5):
        await asyncio.sleep(0)
    assert got == ["after"]
    logged = [r.getMessage() for r in caplog.records if r.exc_info]
    assert any("sync_bad" in m for m in logged) and any("async_bad" in m for m in logged)
    assert "sync base" in caplog.text and "async base" in caplog.text


async def test_sys_exit_in_a_callback_still_ends_the_run(ctx: AppContext) -> None:
    def leave(msg: Any) -> None:
        raise SystemExit(3)

    ctx.on("e", leave)
    with pytest.raises(SystemExit):
        ctx.dispatch_event("e", None)


async def test_stop_handlers_all_shapes(ctx: AppContext) -> None:
    calls: list[Any] = []

    def zero() -> None:
        calls.append("zero")

    def one(timeout: float) -> None:
        calls.append(("one", timeout))

    async def two(timeout: float, can_keep_alive: bool) -> None:
        await asyncio.sleep(0)
        calls.append(("two", timeout, can_keep_alive))

    ctx.set_stop_handler(zero)
    ctx.add_stop_handler(one)
    ctx.addStopHandler(two)
    ctx.add_stop_handler(lambda timeout=0, can_keep_alive=False: calls.append(("defaults", timeout, can_keep_alive)))
    ctx.add_stop_handler(lambda *a: calls.append(("varargs", *a)))

    async def zero_async() -> None:
        calls.append("zero_async")

    ctx.add_stop_handler(zero_async)
    assert await ctx.run_stop_handlers(2500, True) is None
    assert calls == [
        "zero", ("one", 2.5), ("two", 2.5, True), ("defaults", 2.5, True), ("varargs", 2.5, True), "zero_async"
    ]


async def test_stop_handler_first_error_returned_all_run(ctx: AppContext) -> None:
    ran: list[int] = []
    e1 = ValueError("first")

    def h1() -> None:
        ran.append(1)
        raise e1

    async def h2(t: float) -> None:
        ran.append(2)
        raise KeyError("second")

    ctx.add_stop_handler(h1).add_stop_handler(h2).add_stop_handler(lambda: ran.append(3))
    assert await ctx.run_stop_handlers(1000, False) is e1
    assert ran == [1, 2, 3]


async def test_kill_handlers_bounded(ctx: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    ctx.add_kill_handler(lambda: ran.append("a"))

    def boom() -> None:
        raise RuntimeError("kill failed")

    ctx.addKillHandler(boom)
    ctx.add_kill_handler(lambda: ran.append("b"))
    ctx.run_kill_handlers()
    assert ran == ["a", "b"]
    assert "kill failed" in caplog.text

    release = threading.Event()
    ctx.add_kill_handler(lambda: release.wait(5))
    t = time.monotonic()
    ctx.run_kill_handlers(budget_s=0.05)
    assert time.monotonic() - t < 1.0
    release.set()


async def test_kill_handlers_from_another_thread(ctx: AppContext) -> None:
    ran: list[str] = []
    ctx.add_kill_handler(lambda: ran.append(threading.current_thread().name))
    th = threading.Thread(target=ctx.run_kill_handlers)
    th.start()
    th.join(2)
    assert len(ran) == 1


async def test_health_default_true(ctx: AppContext) -> None:
    assert await ctx.health() is True


async def test_health_check_dict_and_bool(ctx: AppContext) -> None:
    ctx.set_health_check(lambda: {"healthy": False})
    assert await ctx.health() is False
    ctx.set_health_check(lambda: {"healthy": True})  # replaces
    assert await ctx.health() is True
    ctx.set_health_check(lambda: True)
    ctx.add_monitoring_handler(lambda: False)
    assert await ctx.health() is False


async def test_monitoring_handlers_anded_sync_async_chained(ctx: AppContext) -> None:
    seen: list[Any] = []

    async def async_ok(resp: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(resp))
        return resp

    def none_opinion() -> None:
        return None

    ctx.addMonitoringHandler(async_ok).add_monitoring_handler(none_opinion)
    assert await ctx.health() is True
    ctx.add_monitoring_handler(lambda resp: {**resp, "healthy": False})
    ctx.add_monitoring_handler(async_ok)
    assert await ctx.health() is False
    assert seen[-1] == {"healthy": False}  # later handlers see the running result


async def test_health_exception_is_unhealthy(ctx: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    def bad() -> bool:
        raise RuntimeError("check exploded")

    ctx.set_health_check(bad)
    assert await ctx.health() is False
    assert await ctx.health() is False
    # logged when it changes, not on every heartbeat
    assert len([r for r in caplog.records if "check exploded" in r.getMessage()]) == 1


async def test_health_async_hang_is_unhealthy(ctx: AppContext) -> None:
    async def hang() -> bool:
        await asyncio.sleep(30)
        return True

    ctx.add_monitoring_handler(hang)
    t = time.monotonic()
    assert await ctx.health(timeout_s=0.1) is False
    assert time.monotonic() - t < 1.0


async def test_health_slow_sync_is_unhealthy(ctx: AppContext) -> None:
    ctx.set_health_check(lambda: time.sleep(0.15) or True)
    assert await ctx.health(timeout_s=0.05) is False


async def test_handlers_must_be_callable(ctx: AppContext) -> None:
    for method in (ctx.add_stop_handler, ctx.add_kill_handler, ctx.add_monitoring_handler, ctx.set_health_check):
        with pytest.raises(TypeError, match="callable"):
            method(42)
