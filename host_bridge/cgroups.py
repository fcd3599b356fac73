"""Linux cgroups as host_bridge uses them: one cgroup v2 per spawned runner, and OOM counters.

Discovery reads /proc/self/mountinfo and /proc/<pid>/cgroup; nothing here needs
a library. Every function returns None (or False) where the system does not
offer what it asks for (no cgroup2 mount, no permission to create a cgroup
below our own, no memory controller): callers fall back, they never fail.
"""

from __future__ import annotations

import os
import secrets


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of every mount."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if sep and len(fields) >= 5 and len(rest) >= 3:
            out.append((fields[4], rest[0], rest[2]))
    return out


def _cgroup_lines(pid: int | str) -> list[tuple[str, str, str]]:
    """(hierarchy id, controllers, path) of /proc/<pid>/cgroup."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return [tuple(line.split(":", 2)) for line in f.read().splitlines() if line.count(":") >= 2]  # type: ignore[misc]
    except OSError:
        return []


def v2_dir(pid: int | str = "self") -> str | None:
    """The cgroup v2 directory ``pid`` is in (None without a cgroup2 mount)."""
    mount = next((point for point, fstype, _ in _mounts() if fstype == "cgroup2"), None)
    path = next((p for hid, ctrl, p in _cgroup_lines(pid) if hid == "0" and ctrl == ""), None)
    if mount is None or path is None:
        return None
    return os.path.join(mount, path.lstrip("/"))


def memory_dir(pid: int | str) -> str | None:
    """The memory cgroup of ``pid``: its v1 memory hierarchy directory, else its v2 one if it
    accounts memory (has memory.events); None if neither."""
    lines = _cgroup_lines(pid)
    v1 = next((point for point, fstype, opts in _mounts() if fstype == "cgroup" and "memory" in opts.split(",")), None)
    if v1 is not None:
        path = next((p for _, ctrl, p in lines if "memory" in ctrl.split(",")), None)
        if path is not None:
            return os.path.join(v1, path.lstrip("/"))
    v2 = v2_dir(pid)
    if v2 is not None and os.path.exists(os.path.join(v2, "memory.events")):
        return v2
    return None


def oom_kills(directory: str) -> int | None:
    """The kernel's count of OOM kills in a memory cgroup (v2 memory.events or v1 memory.oom_control)."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(os.path.join(directory, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def system_oom_kills() -> int | None:
    """The system-wide count of OOM kills (/proc/vmstat oom_kill, Linux >= 4.13)."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class CgroupTree:
    """A cgroup v2 directory of this bridge (below the hub's own cgroup) holding one cgroup per
    spawned runner; made on first use, removed at close. ``None`` groups when not allowed."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.root: str | None = None
        self._tried = False
        self._count = 0

    def _make_root(self) -> str | None:
        if self._tried:
            return self.root
        self._tried = True
        own = v2_dir() if self.enabled else None
        if own is None:
            return None
        root = os.path.join(own, f"host-bridge-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(root)
        except OSError:  # not delegated to us (or read-only): fall back to the sweep
            return None
        self.root = root
        return root

    def new_group(self) -> str | None:
        """A fresh, empty cgroup for one runner, or None."""
        root = self._make_root()
        if root is None:
            return None
        self._count += 1
        path = os.path.join(root, f"runner-{self._count}")
        try:
            os.mkdir(path)
        except OSError:
            return None
        return path

    def close(self) -> None:
        if self.root is not None:
            try:
                os.rmdir(self.root)  # empty by now: each runner's group is removed when it ends
            except OSError:
                pass
