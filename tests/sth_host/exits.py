"""How an STH Instance's exit code is learned: from the process, or as STH's process adapter
does, from the file ``/tmp/runner-<pid>`` (no file and no process: 213)."""

from __future__ import annotations

import glob
import os

import anyio
import anyio.abc
import psutil

from runner.protocol import sth

from .instance import STHInstance

#: Exit code the process adapter reports when the runner vanished without an exit-code file.
EXIT_CODE_UNKNOWN = 213
#: Bytes of the runner's stdout and stderr kept as its crash log.
CRASH_LOG_LIMIT = 64 << 10


def read_exit_file(inst: STHInstance) -> int | None:
    if inst.pid is None:
        return None
    path = sth.exit_code_file(inst.pid)
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    try:
        code = int(text)
    except ValueError:
        return None
    inst.exit_code_from_file = code
    try:
        os.unlink(path)
    except OSError:
        pass
    return code


def remove_stale_exit_file(pid: int) -> None:
    """Forget a /tmp/runner-<pid>: one of an earlier process with this (reused) PID, which the new
    runner's exit code would be read from, or one nothing will read (tests/sth_exit_file.py)."""
    try:
        os.unlink(sth.exit_code_file(pid))
    except OSError:
        pass
    remove_partial_exit_files(pid)


def remove_partial_exit_files(pid: int) -> None:
    """A runner killed while it wrote its exit code leaves ``/tmp/runner-<pid>.<thread>.tmp`` (it
    writes there, then renames: runner/transport/sth_connect.py); once the process is gone nothing
    renames or reads it. Only for a PID whose runner is gone (or not yet writing): a live one's
    rename would fail."""
    for path in glob.glob(glob.escape(sth.exit_code_file(pid)) + ".*.tmp"):
        try:
            os.unlink(path)
        except OSError:
            pass


async def poll_exit_code_file(inst: STHInstance) -> None:
    """The process adapter's way: poll /tmp/runner-<pid>; a vanished PID without it is 213."""
    while not inst.exited:
        code = read_exit_file(inst)
        if code is not None:
            inst.set_exit(code)
            return
        if inst.pid is not None and not psutil.pid_exists(inst.pid):
            code = read_exit_file(inst)
            remove_partial_exit_files(inst.pid)
            inst.set_exit(EXIT_CODE_UNKNOWN if code is None else code)
            return
        await anyio.sleep(inst.host.exit_poll_interval)


async def watch_process(inst: STHInstance, proc: anyio.abc.Process) -> None:
    """Keep the crash log, wait for the exit, and take the exit code the host is set to take."""

    async def pump(stream: anyio.abc.ByteReceiveStream | None) -> None:
        if stream is None:
            return
        async for chunk in stream:
            inst.crash_log += chunk
            if len(inst.crash_log) > CRASH_LOG_LIMIT:
                del inst.crash_log[: len(inst.crash_log) - CRASH_LOG_LIMIT]

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, proc.stdout)
        tg.start_soon(pump, proc.stderr)
        rc = await proc.wait()
    remove_partial_exit_files(proc.pid)  # gone: a half-written exit code stays half-written
    inst._process_exited.set()
    if inst._escalation is not None:
        inst._escalation.wake()
    if inst.host.exit_code_source == "file":
        # the process adapter: only the exit-code file counts once the PING told the PID;
        # before it, STH's start request fails with the spawned process's own exit code
        if not inst.exited:
            if inst.pid is None:
                inst.pid = proc.pid
                code = read_exit_file(inst)
                inst.set_exit(code if code is not None else 137 if rc < 0 else rc)
                return
            code = read_exit_file(inst)
            inst.set_exit(EXIT_CODE_UNKNOWN if code is None else code)
        return
    if inst.pid is None:  # gone before its PING: the file it wrote is under the spawned PID
        remove_stale_exit_file(proc.pid)
    read_exit_file(inst)
    inst.set_exit(137 if rc < 0 else rc)  # a signal death is reported as 137, as STH does
