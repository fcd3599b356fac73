"""The runner's descendants: adopted while it runs, reaped, and ended with it.

* ``become_subreaper``: on Linux the runner is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), so a descendant whose parent died (a daemon that
  forked and ``setsid``'d away from its process group) is re-parented to the runner
  instead of to init, and stays findable. A PID 1 is the reaper already.
* ``start_reaper``: zombies of such adopted orphans (or of anything, as PID 1)
  are reaped, only after they stayed zombies for a while, so
  ``subprocess``/``os.waitpid`` callers that wait for their own children promptly
  still get their exit status.
* ``end_descendants``: on every exit, after the kill handlers had their chance,
  every descendant still running gets SIGTERM, then SIGKILL after a short grace;
  any that still exist are reported. The host's process-group kill cannot reach a
  ``setsid``'d one; a cgroup, where the host has one, is the host's part.
"""

from __future__ import annotations

import os
import signal
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


PR_SET_CHILD_SUBREAPER = 36
#: Seconds between SIGTERM and SIGKILL for descendants at exit, and after SIGKILL until the
#: survivors are reported.
TERM_GRACE = 0.1
KILL_GRACE = 0.05


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); False where the kernel or libc does not allow it."""
    if os.getpid() == 1:
        return True  # init adopts orphans already
    if not os.path.exists("/proc/self/stat"):
        return False
    try:
        from ._reaper_c import set_child_subreaper  # the system call alone, before every PANG
    except ImportError:  # not built (no compiler at install)
        return subreaper_by_ctypes()
    return set_child_subreaper()


def subreaper_by_ctypes() -> bool:
    """``become_subreaper`` without the compiled helper: ctypes costs ~1.3 ms and ~0.7 MiB."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _children_of(pid: int) -> list[int]:
    """Direct children: /proc/PID/task/*/children where the kernel has it, else a /proc scan."""
    children: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                children.extend(int(c) for c in f.read().split())
        return children
    except (OSError, ValueError):
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent_of(int(entry)) == pid:
            children.append(int(entry))
    return children


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")
    except (OSError, ValueError):
        return False


def descendants(root: int | None = None) -> list[int]:
    """Every process below ``root`` (default: this one), parents before their children."""
    root = os.getpid() if root is None else root
    found: list[int] = []
    queue = [root]
    while queue:
        for child in _children_of(queue.pop()):
            if child not in found and child != root:
                found.append(child)
                queue.append(child)
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    alive = [p for p in pids if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.005)
        alive = [p for p in alive if _running(p)]
    return alive


def end_descendants() -> list[int]:
    """SIGTERM every running descendant, SIGKILL what is left after TERM_GRACE; return those still
    running after that (for the report). Linux /proc only; elsewhere nothing is found."""
    if not os.path.isdir("/proc/self/task"):
        return []
    targets = [p for p in descendants() if _running(p)]
    if not targets:
        return []
    _signal_all(targets, signal.SIGTERM)
    left = _wait_gone(targets, TERM_GRACE)
    # what was forked meanwhile (a child reacting to SIGTERM by forking) is found again here
    left = sorted(set(left) | {p for p in descendants() if _running(p)})
    if not left:
        return []
    _signal_all(left, signal.SIGKILL)
    return _wait_gone(left, KILL_GRACE)

