"""Chooses the frame encoder/decoder implementation at import.

The compiled twin (``runner.protocol._framer_c``, built from _framer_c.pyx beside this file)
is used when present. ``SEQUENCE_RUNNER_PURE_PYTHON=1`` forces the pure-Python
framer; ``SEQUENCE_RUNNER_REQUIRE_EXTENSION=1`` turns a missing extension into an
ImportError (CI sets it so a broken build cannot pass silently).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported before PING (runner/hello.py): it costs ~5 ms
if TYPE_CHECKING:
    from typing import Any

PURE_PYTHON_ENV = "SEQUENCE_RUNNER_PURE_PYTHON"
REQUIRE_EXTENSION_ENV = "SEQUENCE_RUNNER_REQUIRE_EXTENSION"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _pure_python() -> tuple[Any, str]:
    from . import _framer_py  # only when it is the one used: ~0.2 ms of every compiled runner's PING

    return _framer_py, "python"


def _load() -> tuple[Any, str]:
    if _flag(PURE_PYTHON_ENV):
        if _flag(REQUIRE_EXTENSION_ENV):
            raise ImportError(f"{PURE_PYTHON_ENV} and {REQUIRE_EXTENSION_ENV} are both set")
        return _pure_python()
    try:
        from . import _framer_c

        if not hasattr(_framer_c.FrameDecoder, "pending_view"):  # built from an older .pyx
            raise ImportError("it was built from an older _framer_c.pyx: rebuild it (pip install -e .)")
    except ImportError as exc:
        if _flag(REQUIRE_EXTENSION_ENV):
            raise ImportError(
                f"{REQUIRE_EXTENSION_ENV} is set but the compiled framer runner.protocol._framer_c "
                f"cannot be imported ({exc}); build it with a C compiler and Cython installed"
            ) from exc
        return _pure_python()
    return _framer_c, "cython"


_impl, IMPLEMENTATION = _load()

FrameDecoder = _impl.FrameDecoder
FrameEncoder = _impl.FrameEncoder
KIND_DATA: int = _impl.KIND_DATA  # the twins have the same values (tests/parity)
KIND_CREDIT: int = _impl.KIND_CREDIT
KIND_END: int = _impl.KIND_END
KIND_MESSAGE: int = _impl.KIND_MESSAGE

__all__ = [
    "IMPLEMENTATION",
    "KIND_CREDIT",
    "KIND_DATA",
    "KIND_END",
    "KIND_MESSAGE",
    "FrameDecoder",
    "FrameEncoder",
]
