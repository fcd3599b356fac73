"""AppContext: what Sequence code sees as ``context``, and the ContextBackend it talks to.

A superset of STH's Python and Node contexts (snake_case names plus the Node
camelCase aliases). Everything that leaves the process goes through the
:class:`ContextBackend` given by the runner process (or by inline mode); this
module does no I/O itself.

Compatibility notes:

* Stop handlers are called ``h(timeout_seconds, can_keep_alive)`` like STH's
  Python runner did (SECONDS, not the ms that STH-Node passes); handlers taking
  fewer parameters get fewer arguments (the signature is inspected), sync and
  async handlers both work. ``context.stop_timeout_ms`` gives the ms left before
  the stop deadline (None when no stop is in progress).
* ``keep_alive(ms)`` sends at once and never sleeps. It returns a
  :class:`Chain`: awaiting it completes immediately (so STH-Py's
  ``await context.keep_alive(x)`` keeps working) and attribute access on it is
  delegated to the context (so Node-style ``context.keepAlive(5000).emit(...)``
  works too). ``emit``, ``on`` and the ``add_*`` methods return a Chain as well.
* Health: sync or async checks, results ANDed; a check may return a dict (its
  ``'healthy'``), a bool, or None (no opinion). An exception, or an async check
  that does not finish within the timeout, means unhealthy. Sync checks run on
  the event loop (keep them short).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol

from .awaitable import is_awaitable, is_coroutine

__all__ = ["TRACE", "AppContext", "Chain", "ContextBackend"]

#: STH-Node's extra level below DEBUG
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

#: What a Sequence's callback raises to end the whole run (sys.exit(), Ctrl-C): the run's
#: failure handling reports them (exit 23 for sys.exit); everything else a callback raises is logged.
_ENDS_THE_RUN = (SystemExit, KeyboardInterrupt)


class ContextBackend(Protocol):
    """What the runner process (or inline mode) implements for an AppContext."""

    def emit(self, event_name: str, message: Any) -> None: ...

    def keep_alive(self, ms: float) -> None: ...

    def end(self) -> None: ...  # -> SEQUENCE_STOPPED {sequenceError: None}

    def destroy(self, error: BaseException | None) -> None: ...  # -> SEQUENCE_STOPPED {sequenceError}

    def stop_time_remaining_ms(self) -> float | None: ...  # None when no stop is in progress


class Chain:
    """Returned by context methods: awaitable (completes at once) and chainable.

    ``await context.keep_alive(100)`` returns the context;
    ``context.keepAlive(100).emit("x")`` calls ``context.emit``.
    """

    __slots__ = ("_ctx",)

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    def __await__(self) -> Generator[Any, None, AppContext]:
        return self._ctx
        yield  # pragma: no cover - makes this a generator

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def __repr__(self) -> str:
        return f"<Chain of {self._ctx!r}>"


def _positional_capacity(fn: Callable[..., Any], wanted: int) -> int:
    """How many positional arguments (up to ``wanted``) ``fn`` accepts."""
    import inspect  # here: it runs when a handler is first registered (runner/deferred_imports.py)

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return wanted
    n = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return wanted
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return min(n, wanted)


def _check_callable(what: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be callable, not {type(fn).__name__}")


class AppContext:
    """The ``context`` passed to ``run(context, input, *args)``."""

    def __init__(
        self,
        backend: ContextBackend,
        *,
        config: dict[str, Any],
        instance_id: str,
        logger: logging.Logger,
        exit_timeout_ms: int = 0,
    ) -> None:
        self._backend = backend
        self.config: dict[str, Any] = config if config is not None else {}
        self.instance_id: str = instance_id
        self.logger: logging.Logger = logger
        self.exit_timeout: int = exit_timeout_ms
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._stop_handlers: list[tuple[Callable[..., Any], int]] = []
        self._kill_handlers: list[Callable[[], Any]] = []
        self._monitoring: list[tuple[Callable[..., Any], int]] = []
        self._health_check: Callable[[], Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_health_error: str | None = None
        self.definition: dict[str, Any] = {"mode": "buffer", "name": "anonymous function"}
        self.hub: Any = None
        self.space: Any = None
        self._decorate_logger(logger)

    @staticmethod
    def _decorate_logger(logger: logging.Logger) -> None:
        """``.warn`` (STH-Py aliased it), ``.trace`` and ``.fatal`` as instance attributes."""
        d = logger.__dict__
        if "warn" not in d:
            d["warn"] = logger.warning
        if "fatal" not in d:
            d["fatal"] = logger.critical
        if "trace" not in d:

            def trace(msg: object, *args: object, **kwargs: Any) -> None:
                if logger.isEnabledFor(TRACE):
                    kwargs.setdefault("stacklevel", 2)
                    logger.log(TRACE, msg, *args, **kwargs)

            d["trace"] = trace

    def __repr__(self) -> str:
        return f"<AppContext instance_id={self.instance_id!r}>"

    # ------------------------------------------------------------------ Sequence-facing

    @property
    def instanceId(self) -> str:
        return self.instance_id

    @property
    def exitTimeout(self) -> int:
        return self.exit_timeout

    @exitTimeout.setter
    def exitTimeout(self, value: int) -> None:
        self.exit_timeout = value

    @property
    def stop_timeout_ms(self) -> float | None:
        """Milliseconds left before the current stop's deadline; None when not stopping."""
        return self._backend.stop_time_remaining_ms()

    def on(self, event_name: str, callback: Callable[..., Any]) -> Chain:
        """Call ``callback(message)`` (sync or async) for every host event ``event_name``."""
        _check_callable("event callback", callback)
        self._listeners.setdefault(event_name, []).append(callback)
        return Chain(self)

    def off(self, event_name: str, callback: Callable[..., Any] | None = None) -> Chain:
        """Remove one callback (or all of them) for ``event_name``."""
        if callback is None:
            self._listeners.pop(event_name, None)
        else:
            cbs = self._listeners.get(event_name, [])
            if callback in cbs:
                cbs.remove(callback)
        return Chain(self)

    def emit(self, event_name: str, message: Any = "") -> Chain:
        """Send an event to the host."""
        self._backend.emit(event_name, message)
        return Chain(self)

    def keep_alive(self, ms: float = 0) -> Chain:
        """Ask for ``ms`` more milliseconds during a stop. Never blocks; see :class:`Chain`."""
        self._backend.keep_alive(float(ms or 0))
        return Chain(self)

    keepAlive = keep_alive

    def add_stop_handler(self, handler: Callable[..., Any], *_ignored: Any) -> Chain:
        """``handler(timeout_seconds, can_keep_alive)``, sync or async, 0-2 parameters."""
        _check_callable("stop handler", handler)
        self._stop_handlers.append((handler, _positional_capacity(handler, 2)))
        return Chain(self)

    set_stop_handler = add_stop_handler
    addStopHandler = add_stop_handler

    def add_kill_handler(self, handler: Callable[[], Any]) -> Chain:
        """A synchronous ``handler()`` run briefly when the instance is killed."""
        _check_callable("kill handler", handler)
        self._kill_handlers.append(handler)
        return Chain(self)

    addKillHandler = add_kill_handler

    def add_monitoring_handler(self, handler: Callable[..., Any]) -> Chain:
        """``handler()`` or ``handler({'healthy': bool})``, sync or async; see module docs."""
        _check_callable("monitoring handler", handler)
        self._monitoring.append((handler, _positional_capacity(handler, 1)))
        return Chain(self)

    addMonitoringHandler = add_monitoring_handler

    def set_health_check(self, fn: Callable[[], Any]) -> Chain:
        """STH-Py's health check: replaces the previous one; ANDed with monitoring handlers."""
        _check_callable("health check", fn)
        self._health_check = fn
        return Chain(self)

    def end(self) -> Chain:
        """Tell the host the Sequence is done (SEQUENCE_STOPPED without error)."""
        self._backend.end()
        return Chain(self)

    def destroy(self, error: BaseException | str | None = None) -> Chain:
        """Tell the host the Sequence failed (SEQUENCE_STOPPED with the error)."""
        if isinstance(error, str):
            error = Exception(error)
        self._backend.destroy(error)
        return Chain(self)

    def describe(self, definition: dict[str, Any]) -> Chain:
        """Merge into ``context.definition`` (informational, as in STH-Node)."""
        self.definition.update(definition)
        return Chain(self)

    # ------------------------------------------------------------------ runner-facing

    def dispatch_event(self, event_name: str, message: Any) -> None:
        """Call the callbacks for a host event (on the loop). Errors are logged, never raised."""
        for cb in list(self._listeners.get(event_name, ())):
            try:
                result = cb(message)
            except _ENDS_THE_RUN:
                raise
            except BaseException:  # any other error of the Sequence's, Exception or not: logged, never lost
                self.logger.exception("event callback %r for %r raised", cb, event_name)
                continue
            # A Chain (``lambda m: context.emit("pong", m)`` returns one) completes at once when
            # awaited: no task for it (that was a task, two more loop turns and a getpid per event).
            if result is not None and result.__class__ is not Chain and is_awaitable(result):
                self._spawn(result, f"event callback {cb!r} for {event_name!r}")

    def _spawn(self, aw: Awaitable[Any], what: str) -> None:
        async def runner() -> None:
            try:
                await aw
            except (asyncio.CancelledError, *_ENDS_THE_RUN):
                raise
            except BaseException:
                self.logger.exception("%s raised", what)

        task = asyncio.ensure_future(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_stop_handlers(self, timeout_ms: float, can_keep_alive: bool) -> BaseException | None:
        """Run every stop handler in order; return the first error (None if all succeeded).

        Handlers get ``(timeout_ms / 1000, can_keep_alive)`` (seconds, as STH-Py).
        This does not enforce the deadline; the caller does.
        """
        first: BaseException | None = None
        args = (timeout_ms / 1000.0, bool(can_keep_alive))
        for handler, nargs in list(self._stop_handlers):
            try:
                result = handler(*args[:nargs])
                if is_awaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.logger.exception("stop handler %r raised", handler)
                if first is None:
                    first = e
        return first

    def run_kill_handlers(self, budget_s: float = 0.1) -> None:
        """Run the kill handlers, in a helper thread, for at most ``budget_s`` in total.

        Safe from any thread. Handlers still running when the budget is spent
        are abandoned (the thread is a daemon). Errors are logged.
        """
        handlers = list(self._kill_handlers)
        if not handlers:
            return

        def work() -> None:
            for h in handlers:
                try:
                    result = h()
                    if is_coroutine(result):
                        result.close()
                        self.logger.warning("kill handler %r is async; kill handlers must be sync", h)
                except Exception:
                    self.logger.exception("kill handler %r raised", h)

        t = threading.Thread(target=work, name="kill-handlers", daemon=True)
        t.start()
        t.join(max(0.0, budget_s))
        if t.is_alive():
            self.logger.warning("kill handlers did not finish within %.3f s", budget_s)

    async def _one_health(self, fn: Callable[..., Any], nargs: int, current: bool) -> bool:
        result = fn(*({"healthy": current},)[:nargs])
        if is_awaitable(result):
            result = await result
        if result is None:
            return True
        if isinstance(result, bool):
            return result
        if isinstance(result, dict):
            return bool(result.get("healthy", True))
        return bool(result)

    async def health(self, timeout_s: float = 1.0) -> bool:
        """AND of the health check and monitoring handlers; exception or timeout → False."""
        checks: list[tuple[Callable[..., Any], int]] = []
        if self._health_check is not None:
            checks.append((self._health_check, 0))
        checks.extend(self._monitoring)
        if not checks:
            return True

        async def all_checks() -> bool:
            healthy = True
            for fn, nargs in checks:
                healthy = await self._one_health(fn, nargs, healthy) and healthy
            return healthy

        start = time.monotonic()
        try:
            ok = await asyncio.wait_for(all_checks(), timeout_s)
        except asyncio.TimeoutError:
            self._log_health_error(f"health check did not finish within {timeout_s} s")
            return False
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure means unhealthy
            self._log_health_error(f"health check raised {type(e).__name__}: {e}", exc=e)
            return False
        if time.monotonic() - start > timeout_s:  # a sync check blocked the loop too long
            self._log_health_error(f"health check took longer than {timeout_s} s")
            return False
        self._last_health_error = None
        return ok

    def _log_health_error(self, text: str, exc: BaseException | None = None) -> None:
        # heartbeats come every second: log a failure when it changes, not every time
        if text != self._last_health_error:
            self._last_health_error = text
            self.logger.warning("%s; reporting unhealthy", text, exc_info=exc)
