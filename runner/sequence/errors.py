"""The two ways loading a Sequence fails, split the way STH's exit codes are."""

from __future__ import annotations

__all__ = ["SequenceLoadError", "SequencePathError"]


class SequencePathError(Exception):
    """The path is not a usable Sequence (runner exit code 21)."""


class SequenceLoadError(Exception):
    """The Sequence's code failed to load (runner exit code 22).

    ``traceback_text`` is the formatted traceback (or the plain message when
    there is no exception behind the error, e.g. a missing ``run``).
    """

    def __init__(self, message: str, traceback_text: str | None = None) -> None:
        super().__init__(message)
        self.traceback_text: str = traceback_text if traceback_text is not None else message + "\n"
