"""STH mode's startup log: the runner's log records before the LOG channel is connected.

STH's process adapter passes a startup-log path (else stdout gets them). Lines are the LOG
channel's JSON lines (runner.logs.format_record). Before PING, ``StartupLog`` writes them
itself, so ``logging`` (~5 ms with traceback, string and the rest) is not imported before
PING; ``install_handler`` then routes the ``runner`` logger there until runner.logs.setup
takes over.
"""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

LOGGER = "runner"


def write_line(path: str | None, line: bytes) -> None:
    """Append one line to the startup log (best effort: logging must never break the start)."""
    try:
        if path is None:
            os.write(1, line)
        else:
            with open(path, "ab") as f:
                f.write(line)
    except Exception:  # noqa: BLE001, S110 - logging must never break the start
        pass


class StartupLog:
    """The few records STH mode writes before PING, in format_record's form (INFO and above)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def _write(self, level: str, msg: str, args: tuple[object, ...]) -> None:
        entry = {"ts": int(time.time() * 1000), "level": level, "from": LOGGER, "msg": msg % args if args else msg}
        write_line(self.path, (json.dumps(entry, ensure_ascii=False, default=repr) + "\n").encode("utf-8"))

    def info(self, msg: str, *args: object) -> None:
        self._write("INFO", msg, args)

    def warning(self, msg: str, *args: object) -> None:
        self._write("WARN", msg, args)

    def error(self, msg: str, *args: object) -> None:
        self._write("ERROR", msg, args)


def install_handler(path: str | None) -> logging.Logger:
    """From now on the ``runner`` logger writes to the startup log (INFO and above)."""
    import logging

    from .logs import format_record

    class StartupLogHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                line = format_record(record)
            except Exception:  # noqa: BLE001 - logging must never break the start
                return
            write_line(path, line)

    log = logging.getLogger(LOGGER)
    log.handlers[:] = [StartupLogHandler()]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log
