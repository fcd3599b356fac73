"""How a Sequence's run ended when it did not simply return: exit code, one-line message, traceback.

One classification for the runner process and ``run --inline`` (docs/runner.md "Exit codes"):

* ``sys.exit()``, ``sys.exit(0)``, ``sys.exit(None)`` inside run() (or anything it calls on the
  event loop) ends the run as if run() had returned: ``None`` here, and the caller completes
  (output produced so far sent, SEQUENCE_COMPLETED, exit 0);
* ``sys.exit(n)`` with any other value, ``KeyboardInterrupt`` raised by the Sequence, any other
  exception: exit 23, "failed during execution";
* input that cannot be decoded (or an input content type the runner cannot decode): exit 23
  with a one-line message naming the byte offset or the line, no traceback.

Tracebacks show only the user's frames: frames of the runner itself, asyncio, anyio and the
import machinery are left out (``SEQUENCE_RUNNER_FULL_TRACEBACK=1`` keeps them all; the CLI's
``-v`` sets it). When nothing but runner frames remains (e.g. an output item the output content
type cannot hold), the traceback is the exception line alone.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from ..protocol import ExitCode
from ..protocol.records import FrozenRecord, checked_as

__all__ = ["FULL_TRACEBACK_ENV", "Failure", "classify_run_error", "import_failure_message", "user_traceback"]

FULL_TRACEBACK_ENV = "SEQUENCE_RUNNER_FULL_TRACEBACK"

_RUNNER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _internal_dirs() -> tuple[str, ...]:
    dirs = [_RUNNER_DIR]
    for name in ("asyncio", "anyio", "concurrent.futures"):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            dirs.append(os.path.dirname(os.path.abspath(path)))
    return tuple(d + os.sep for d in dirs)


def _is_internal(filename: str, internal: tuple[str, ...]) -> bool:
    if filename.startswith("<frozen importlib"):
        return True
    return os.path.abspath(filename).startswith(internal) if filename[:1] != "<" else False


def full_traceback_wanted() -> bool:
    return os.environ.get(FULL_TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _strip(te: traceback.TracebackException, internal: tuple[str, ...], seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _is_internal(f.filename, internal)])
    for nested in (te.__cause__, te.__context__):
        if nested is not None:
            _strip(nested, internal, seen)
    for member in getattr(te, "exceptions", None) or ():  # exception groups (3.11+)
        _strip(member, internal, seen)


def user_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` (and its causes) with only the user's frames."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    if not full_traceback_wanted():
        _strip(te, _internal_dirs(), set())
    return "".join(te.format())


@checked_as(frozen=True)
class Failure(FrozenRecord):
    """Written by hand, as the frozen dataclass it was (runner/protocol/records.py): this module is
    imported after the Sequence's directory leads sys.path, so it must not import dataclasses."""

    __match_args__ = ("code", "message", "stack")
    code: int  # the exit code
    message: str  # one line: ERROR's message and the exit reason
    stack: str  # for STDERR, LOG and ERROR's stack

    def __init__(self, code: int, message: str, stack: str) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "stack", stack)


def _exit_value(exc: SystemExit) -> str:
    return repr(exc.code) if not isinstance(exc.code, int) else str(exc.code)


def _input_error_types() -> tuple[type[BaseException], ...]:
    from .content import InputDecodeError, UnsupportedContentType

    return (InputDecodeError, UnsupportedContentType)


def classify_run_error(exc: BaseException) -> Failure | None:
    """What ``exc``, raised out of the Sequence's run (or its input), means; None: a clean end."""
    code = int(ExitCode.FAILED_DURING_EXECUTION)
    if isinstance(exc, SystemExit):
        if exc.code is None or exc.code == 0:
            return None
        message = f"the Sequence called sys.exit({_exit_value(exc)})"
        return Failure(code, message, _with_headline(user_traceback(exc), message))
    if isinstance(exc, _input_error_types()):
        message = f"input error: {exc}"
        return Failure(code, message, user_traceback(exc) if full_traceback_wanted() else message + "\n")
    if isinstance(exc, KeyboardInterrupt):
        message = "the Sequence raised KeyboardInterrupt"
        return Failure(code, message, _with_headline(user_traceback(exc), message))
    return Failure(code, f"{type(exc).__name__}: {exc}", user_traceback(exc))


def _with_headline(stack: str, headline: str) -> str:
    return stack if headline in stack else f"{stack.rstrip()}\n({headline})\n"


def import_failure_message(exc: BaseException, main_path: Any) -> str:
    """The one-line message of a Sequence that failed while being imported (exit 22)."""
    if isinstance(exc, SystemExit):
        return (f"the Sequence called sys.exit({_exit_value(exc)}) while {main_path} was being imported "
                "(run() was never called)")
    if isinstance(exc, KeyboardInterrupt):
        return f"the Sequence raised KeyboardInterrupt while {main_path} was being imported"
    kind = "syntax error in" if isinstance(exc, SyntaxError) else (
        "import error in" if isinstance(exc, ImportError) else "exception while importing")
    return f"{kind} {main_path}: {type(exc).__name__}: {exc}"
