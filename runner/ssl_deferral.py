"""asyncio without ``ssl`` until something asks for ``ssl``.

``import asyncio`` imports ``ssl`` (asyncio.base_events, selector_events and sslproto each
``try: import ssl``), and with it libssl and libcrypto: ~4.3 MiB of an idle runner's RSS
and ~5 ms of its start-up (docs/benchmarks.md, "Idle memory"). A runner whose Sequence
never speaks TLS does not need it.

``import_asyncio`` imports asyncio while ``sys.modules["ssl"]`` is None, so those three
modules take the path they take on a Python built without ssl (``ssl = None``), then
takes the None out again and puts a finder first on ``sys.meta_path``: the first
``import ssl`` afterwards (the Sequence's, uvloop's, anyio's, aiohttp's...) loads the
real module as usual and then hands it to those three modules (and sslproto's
``SSLAgainErrors``, which it computes from ssl when imported), so ``start_tls``,
``open_connection(ssl=...)`` and ``start_server(ssl=...)`` work exactly as if ssl had been
there from the start (tests/runner/test_ssl_deferral.py does a TLS round trip through a
runner). Until then nothing in asyncio can meet an SSL object: there is no ``ssl``
module to make one with.

Called once by the runner process, after PING and before anything imports asyncio
(runner/app.py). A no-op when asyncio or ssl is already imported (a warm template's
fork, a test process, a sitecustomize that imported ssl).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

__all__ = ["import_asyncio"]

#: The asyncio modules that bind ``ssl`` at import (CPython 3.10-3.13).
ASYNCIO_SSL_USERS = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto")


def import_asyncio() -> bool:
    """Import asyncio without ssl; True when ssl was deferred (False: already imported, as usual)."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        import asyncio  # the usual import

        return False
    sys.modules["ssl"] = None  # type: ignore[assignment]  # "import ssl" raises ImportError: ssl = None
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]
    sys.meta_path.insert(0, SSLFinder())
    return True


def give_asyncio(ssl: ModuleType) -> None:
    """What asyncio's modules would have bound had ssl been there when they were imported; the finder
    goes (it stays until ssl has actually run: ``importlib.util.find_spec("ssl")`` alone loads nothing)."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, SSLFinder)]
    for name in ASYNCIO_SSL_USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "ssl", None) is None:
            module.ssl = ssl  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        sslproto.SSLAgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)  # type: ignore[attr-defined]


class SSLFinder:
    """First on ``sys.meta_path`` until ssl has run: finds ssl with the other finders and wraps
    its loader so that, once the module has run, asyncio gets it (``give_asyncio``)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        if fullname != "ssl":
            return None
        from .deferred_imports import spec_from_other_finders

        spec = spec_from_other_finders(self, fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = HandOverLoader(spec.loader)  # type: ignore[assignment]  # a Loader by its methods
        return spec


class HandOverLoader:
    """ssl's own loader, plus ``give_asyncio`` once the module ran; afterwards the module names its
    own loader again (``ssl.__loader__``, ``ssl.__spec__.loader``), as if this had not been here."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        give_asyncio(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, is_package, ...
        return getattr(self.loader, name)
