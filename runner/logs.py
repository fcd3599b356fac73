"""Log records as JSON lines on the LOG channel (docs/protocol.md §7).

``{"ts": ms, "level": "TRACE|DEBUG|INFO|WARN|ERROR|FATAL", "from": logger name,
"msg": text}`` plus ``"exc"`` with the traceback when the record has one. The
Sequence logs through ``context.logger`` (logger ``Sequence``), the runner
through logger ``runner``.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from .transport.base import ChannelWriter

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

SEQUENCE_LOGGER = "Sequence"
RUNNER_LOGGER = "runner"
LEVEL_NUMBERS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
                 "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
                 "CRITICAL": logging.CRITICAL}


def level_name(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "FATAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    if levelno >= logging.DEBUG:
        return "DEBUG"
    return "TRACE"


def format_record(record: logging.LogRecord) -> bytes:
    """One JSON line for ``record``."""
    entry: dict[str, Any] = {
        "ts": int(record.created * 1000),
        "level": level_name(record.levelno),
        "from": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info and record.exc_info[0] is not None:
        entry["exc"] = "".join(traceback.format_exception(*record.exc_info))
    elif record.exc_text:
        entry["exc"] = record.exc_text
    if record.stack_info:
        entry["stack"] = record.stack_info
    return (json.dumps(entry, ensure_ascii=False, default=repr) + "\n").encode("utf-8")


class ChannelLogHandler(logging.Handler):
    """Writes JSON lines to the LOG channel.

    ``block=True`` (the Sequence's logger): a full LOG makes the logging thread wait,
    like print() on a full STDOUT. ``block=False`` (the runner's own logger, used by the
    control, heartbeat and exit threads): a full LOG drops the record, so a host that
    does not read LOG can never hold up control.
    """

    def __init__(self, writer: ChannelWriter, level: int = logging.NOTSET, *, block: bool = True) -> None:
        super().__init__(level)
        self.writer = writer
        self.timeout: float | None = None if block else 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = format_record(record)
        except Exception:  # noqa: BLE001 - a broken record must not break the Sequence
            self.handleError(record)
            return
        self.writer.write(line, self.timeout)


def setup(writer: ChannelWriter, runner_level: str = "INFO") -> tuple[logging.Logger, logging.Logger]:
    """Attach the LOG handler to the runner's and the Sequence's loggers; return (runner, sequence)."""
    runner_log = logging.getLogger(RUNNER_LOGGER)
    runner_log.setLevel(LEVEL_NUMBERS.get(runner_level.upper(), logging.INFO))
    sequence_log = logging.getLogger(SEQUENCE_LOGGER)
    sequence_log.setLevel(logging.DEBUG)
    for logger, block in ((runner_log, False), (sequence_log, True)):
        logger.handlers[:] = [ChannelLogHandler(writer, block=block)]
        logger.propagate = False
    return runner_log, sequence_log
