"""Every process a runner starts ends with its Instance, and how it died is told as far as the kernel says.

Where the system lets host_bridge create cgroups (cgroup v2, delegated to the
hub or the hub is root) each spawned runner is moved into its own cgroup right
after it starts, before the handshake, so before any Sequence code runs; every
descendant stays in it whatever it does (``setsid``, double fork). When the
runner has exited, ``cgroup.kill`` (or SIGKILL to each member) ends them all and
the cgroup is removed.

Elsewhere it is a best-effort sweep of /proc after the runner exited: processes
in the runner's session (it is a session leader) that started after it, and
processes whose environment carries the runner's ``SEQUENCE_RUNNER_SCOPE`` tag
(which a descendant inherits unless it clears its environment). Only processes
of the hub's own user can be seen and signalled.

Either way, what is still alive after SIGKILL and a short wait is reported as a
survivor. OOM evidence comes from the kernel's counters: the runner's own
memory cgroup (``memory.events``/``memory.oom_control`` ``oom_kill``) when it
has one that the hub does not share, else the system-wide ``/proc/vmstat``
``oom_kill`` count, which can only say that some process was OOM-killed.
dmesg is not used (usually not readable, and not parseable reliably).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

import anyio

from .cgroups import memory_dir, oom_kills, system_oom_kills

#: Environment variable carrying a random per-runner tag (finds descendants without a cgroup).
SCOPE_ENV = "SEQUENCE_RUNNER_SCOPE"
#: Seconds to wait for the descendants to be gone after SIGKILL.
_GONE_WAIT = 2.0


@dataclass(frozen=True)
class Cleanup:
    """What ending a runner's descendants found, and what the kernel says about OOM kills."""

    method: str  # "cgroup" or "sweep"
    killed: list[int] = field(default_factory=list)  # descendants alive after the runner exited, killed
    survivors: list[int] = field(default_factory=list)  # still alive after SIGKILL and a short wait
    oom: str | None = None  # the kernel counted an OOM kill while the runner ran (which counter)
    oom_certain: bool = False  # the counter is the runner's own cgroup's (else system-wide)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, session id, start time in clock ticks) of ``pid``; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            after = f.read().rsplit(")", 1)[1].split()
        return after[0], int(after[3]), int(after[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # gone already, or not ours: it is reported if it stays


class Containment:
    """The descendants of one spawned runner (see the module docstring)."""

    def __init__(self, pid: int, group: str | None, scope: str) -> None:
        self.pid = pid
        self.group = group
        self._marker = f"{SCOPE_ENV}={scope}".encode()
        stat = _stat(pid)
        self._started = stat[2] if stat else 0
        self._system_oom = system_oom_kills()
        self._memory: tuple[str, int] | None = None
        self._hub_memory = memory_dir("self")

    def adopt(self) -> None:
        """Move the runner into its cgroup (call before its handshake completes)."""
        if self.group is None:
            return
        try:
            with open(os.path.join(self.group, "cgroup.procs"), "w") as f:
                f.write(str(self.pid))
        except OSError:  # gone already, or not allowed after all: the sweep takes over
            self._remove_group()

    def note_memory_cgroup(self) -> None:
        """Remember the runner's memory cgroup and its OOM count (at the handshake: by then a
        wrapper that put the runner in a cgroup of its own has done so)."""
        directory = memory_dir(self.pid)
        count = oom_kills(directory) if directory is not None else None
        if directory is not None and count is not None:
            self._memory = (directory, count)

    async def end(self) -> Cleanup:
        """After the runner exited: kill what it left behind, report survivors and OOM evidence."""
        oom, certain = self._oom_evidence()
        if self.group is not None:
            killed, survivors = await self._end_group()
            return Cleanup("cgroup", killed, survivors, oom, certain)
        killed = self._descendants()
        _kill(killed)
        with anyio.move_on_after(_GONE_WAIT):
            while any(_alive(pid) for pid in killed):
                await anyio.sleep(0.02)
        return Cleanup("sweep", killed, [pid for pid in killed if _alive(pid)], oom, certain)

    async def _end_group(self) -> tuple[list[int], list[int]]:
        assert self.group is not None
        members = self._members()
        if members:
            self._kill_group(members)
        with anyio.move_on_after(_GONE_WAIT):
            while [pid for pid in self._members() if _alive(pid)]:
                await anyio.sleep(0.02)
        survivors = [pid for pid in self._members() if _alive(pid)]
        if not survivors:
            self._remove_group()
        return members, survivors

    def _kill_group(self, members: list[int]) -> None:
        assert self.group is not None
        try:
            with open(os.path.join(self.group, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:  # no cgroup.kill before Linux 5.14: one by one
            _kill(members)

    def _members(self) -> list[int]:
        assert self.group is not None
        try:
            with open(os.path.join(self.group, "cgroup.procs")) as f:
                return [int(line) for line in f.read().split()]
        except (OSError, ValueError):
            return []

    def _remove_group(self) -> None:
        if self.group is not None:
            try:
                os.rmdir(self.group)
            except OSError:
                pass
            self.group = None

    def _descendants(self) -> list[int]:
        """Live processes from the runner's session (started after it) or carrying its scope tag."""
        own = os.getpid()
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in (own, self.pid):
                continue
            pid = int(name)
            stat = _stat(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            in_session = stat[1] == self.pid and stat[2] >= self._started
            if in_session or _environ_has(pid, self._marker):
                found.append(pid)
        return found

    def _oom_evidence(self) -> tuple[str | None, bool]:
        if self._memory is not None:
            directory, before = self._memory
            after = oom_kills(directory)
            if after is not None and after > before:
                own = directory != self._hub_memory  # a cgroup the hub shares could mean another victim
                return f"{directory}: oom_kill {before} -> {after}", own
            return None, False
        before_system, after_system = self._system_oom, system_oom_kills()
        if before_system is not None and after_system is not None and after_system > before_system:
            return f"/proc/vmstat oom_kill {before_system} -> {after_system} (system-wide)", False
        return None, False
