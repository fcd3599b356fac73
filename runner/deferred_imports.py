"""Standard modules the runner's start-up imports only because others do, run when first used.

A cold runner imports asyncio, logging and traceback before its PANG, and they import
``inspect`` (with ``ast`` and ``dis``), ``linecache`` (with ``tokenize``), ``textwrap`` and
``locale`` at their top while using them only inside functions: ``inspect`` to describe
coroutines in debug mode and in reprs, ``linecache`` to read source lines for a traceback,
``textwrap`` to indent exception groups, ``locale`` for a subprocess's text-mode encoding. Running them costs ~7 ms of a cold
start (~12%) and ~1 MiB of an idle runner (docs/benchmarks.md, "Cold start: modules run when
first used"); a Sequence that never needs them should not pay for them.

``install()`` puts a finder first on ``sys.meta_path`` for the start-up. A module of
``DEFERRED`` imported while it is there, by anyone, is made the way the import system makes
every module (its name, spec, loader, file, and its place in ``sys.modules`` and on its
package), but its code has not run yet. The first time anyone asks it for an attribute it does
not have (``inspect.signature``, ``from inspect import isawaitable``, ``dir(inspect)``) its
own loader runs the code into that same module object, under one lock, so whoever imported it
already holds the real module and nobody can see the difference except in time. ``remove()``
takes the finder out again (runner/runtime.py, before the Sequence is imported): what the
Sequence imports for the first time is imported as usual.

Like any import, the deferred run happens at most once; a second thread asking while the code
runs waits for it. One difference: an error while the module runs (none of these raise)
would surface at that first use instead of at the import.

One module is made another way. msgpack needs ``datetime`` (its C module asks for datetime's C
API when imported). On CPython 3.10 and 3.11 ``datetime.py`` first runs its whole pure-Python
implementation, then replaces every name with ``_datetime``'s and deletes its helpers: ~2 ms of
a cold start for a module that ends up as ``_datetime``'s names plus ``__all__`` and ``sys``.
While the finder is installed, ``datetime`` is made directly that way (``C_DATETIME``; what
3.12's ``datetime.py`` does); tests/runner/test_deferred_imports.py compares it with a usual import.
"""

from __future__ import annotations

import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from typing import Any

__all__ = ["DEFERRED", "DeferredModule", "install", "remove", "spec_from_other_finders"]

#: Imported at the top of asyncio (inspect; asyncio.sslproto, its TLS, which runner/ssl_deferral.py
#: hands ssl to), traceback (linecache; textwrap from 3.11) or subprocess (locale, from 3.11), CPython
#: 3.10-3.13, and used there only inside functions; and what those import in turn (ast, dis,
#: tokenize), should anything else import them first: runner/stdin.py imports ``dis``.
DEFERRED = frozenset({"inspect", "dis", "ast", "tokenize", "textwrap", "locale", "linecache", "asyncio.sslproto"})

#: ``datetime`` is made from ``_datetime`` alone where ``datetime.py`` would first run its pure-Python
#: implementation to throw it away (before 3.12; from 3.12 it imports ``_datetime`` first itself).
C_DATETIME = sys.version_info < (3, 12)

_lock: Any = None  # an RLock, made by install(): _thread is built in, threading is not imported yet


class DeferredModule(types.ModuleType):
    """A module whose code runs the first time it is asked for something it lacks; then it is a
    plain module (``__class__`` is ``types.ModuleType`` again), so this costs nothing afterwards."""

    def __getattr__(self, name: str) -> Any:  # only for attributes the module does not have (yet)
        _ensure_ran(self)
        return types.ModuleType.__getattribute__(self, name)

    def __dir__(self) -> list[str]:
        _ensure_ran(self)  # the listing of a module that ran
        return list(types.ModuleType.__dir__(self))


def _ensure_ran(module: DeferredModule) -> None:
    """Run the module's code unless it ran, or is running (asked from its own code or a cycle).
    A function, not a method: the module's own names come before a method's in attribute lookup."""
    with _lock:
        if type(module) is DeferredModule and module.__name__ not in _running:
            _run(module)


#: Modules whose code is running: asked again meanwhile (from their own code, or a cycle through
#: another module), they answer as any module being imported does, with what they have so far.
_running: set[str] = set()
_fork_hook = False  # not before a module runs: a warm fork would write a page of its own for it


def _run(module: DeferredModule) -> None:
    global _fork_hook
    spec = module.__spec__
    assert spec is not None and spec.loader is not None
    if not _fork_hook:  # from the first run on: a fork taken while another thread runs a module here
        import os

        os.register_at_fork(after_in_child=_new_lock)
        _fork_hook = True
    _running.add(module.__name__)
    try:
        spec.loader.exec_module(module)  # its own loader (_ArmingLoader put it back)
    finally:
        _running.discard(module.__name__)
    module.__class__ = types.ModuleType  # type: ignore[assignment]  # a plain module from now on


class _WrappingLoader:
    """A module's own loader inside: the import system makes a plain module and sets its attributes
    (probing them meanwhile, so nothing may run yet); ``exec_module`` gives the module its own loader
    back (``__loader__``, ``__spec__.loader``) and then does what the subclass does instead of it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # the import system's own module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.instead(module)

    def instead(self, module: types.ModuleType) -> None:
        raise NotImplementedError


class _ArmingLoader(_WrappingLoader):
    """A DEFERRED module: made a DeferredModule, its code run later by ``_run``."""

    def instead(self, module: types.ModuleType) -> None:
        module.__class__ = DeferredModule


class _CDatetimeLoader(_WrappingLoader):
    """``datetime`` as 3.10 and 3.11 leave it once ``_datetime`` replaced their pure-Python classes:
    its names, ``__doc__``, ``__all__``, and ``sys`` (left over there), without running the rest.
    Without ``_datetime`` (another Python) the module runs as usual."""

    def instead(self, module: types.ModuleType) -> None:
        try:
            import _datetime  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            self.loader.exec_module(module)
            return
        module.__dict__.update((name, value) for name, value in vars(_datetime).items() if not name.startswith("_"))
        module.__doc__ = _datetime.__doc__
        module.__all__ = ("date", "datetime", "time", "timedelta", "timezone",  # type: ignore[attr-defined]
                          "tzinfo", "MINYEAR", "MAXYEAR", *(("UTC",) if hasattr(_datetime, "UTC") else ()))  # 3.11: UTC
        module.sys = sys  # type: ignore[attr-defined]


class DeferringFinder:
    """First on ``sys.meta_path`` while installed: finds a DEFERRED module (and ``datetime``) with the
    other finders and wraps its loader; every other name is theirs."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
                  ) -> ModuleSpec | None:
        wrap: type[_WrappingLoader]
        if fullname in DEFERRED:
            wrap = _ArmingLoader
        elif fullname == "datetime" and C_DATETIME:
            wrap = _CDatetimeLoader
        else:
            return None
        spec = spec_from_other_finders(self, fullname, path, target)
        if spec is not None and getattr(spec.loader, "exec_module", None) is not None:  # source or bytecode
            spec.loader = wrap(spec.loader)  # type: ignore[assignment]  # a Loader by its methods
        return spec


def spec_from_other_finders(me: object, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None
                            ) -> ModuleSpec | None:
    """The spec the finders on ``sys.meta_path`` other than ``me`` give (a finder that wraps their
    loader: this one, runner/ssl_deferral.py's)."""
    for finder in sys.meta_path:
        if finder is me:
            continue
        find = getattr(finder, "find_spec", None)
        spec: ModuleSpec | None = find(fullname, path, target) if find is not None else None
        if spec is not None:
            return spec
    return None


def install() -> None:
    """Defer DEFERRED modules imported from now until ``remove()``; the ones already imported stay."""
    if _lock is None:
        _new_lock()
    if not any(isinstance(finder, DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, DeferringFinder())


def _new_lock() -> None:
    """The lock; again in a forked child, as the import system does with its own locks: a thread
    that held it in the parent does not exist there (the module it was running runs again)."""
    global _lock
    import _thread

    _lock = _thread.RLock()
    _running.clear()


def remove() -> None:
    """Import as usual from now on; modules already deferred still run when first used."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, DeferringFinder)]
