"""Reaping orphaned children when the runner is PID 1 (a container without an init).

Only used when ``os.getpid() == 1``. A zombie is reaped only after it has stayed
a zombie for a while, so ``subprocess``/``os.waitpid`` callers that wait for
their own children promptly still get their exit status.
"""

from __future__ import annotations

import os
import threading
import time

POLL = 1.0
GRACE = 5.0


def _reap_forever() -> None:
    seen: dict[int, float] = {}
    while True:
        time.sleep(POLL)
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            seen.clear()
            continue
        if info is None:
            continue
        now = time.monotonic()
        first = seen.setdefault(info.si_pid, now)
        if now - first >= GRACE:
            try:
                os.waitpid(info.si_pid, os.WNOHANG)
            except ChildProcessError:
                pass
            seen.pop(info.si_pid, None)


def start_reaper() -> None:
    threading.Thread(target=_reap_forever, name="runner-reaper", daemon=True).start()
