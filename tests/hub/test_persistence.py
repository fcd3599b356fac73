"""The store outlives the hub: Sequences and ended Instances survive a restart; Instances that
were running when the hub died are reported as such (in docker mode: their containers, found by
the hub's label, are removed and named in the reason)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil
from flows import TEXT, start, wait_ended, wait_for
from hubproc import package


def containers_named(name: str) -> list[str]:
    found = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", f"name=^{name}$"],
                           capture_output=True, text=True, check=True)
    return found.stdout.split()


def test_sequences_and_ended_instances_survive_a_restart(hub_factory: Any, runtime: str) -> None:
    first = hub_factory()
    with first.client() as c:
        seq = c.post("/sequence", content=package("hello"), headers={"x-name": "greeter"}).json()["id"]
        done = start(c, seq, appConfig={"k": 1})
        c.post(f"/instance/{done}/input", content=b"x\n", headers=TEXT)
        assert c.get(f"/instance/{done}/output").content == b"Hello x!\n"
        before = wait_ended(c, done)
        running_seq = c.post("/sequence", content=package("events")).json()["id"]
        running = start(c, running_seq)
        shown = c.get(f"/instance/{running}").json()
        pid, container = shown["pid"], shown.get("container")
    os.kill(first.proc.pid, signal.SIGKILL)  # the hub dies; nothing gets to stop or record anything
    first.proc.wait()
    if runtime == "process":  # the runner notices its hub is gone and exits by itself
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                 what="the orphaned runner to exit")
    else:  # its container stays (the hub died before removing it), for the next hub to find
        assert container == f"sequence-{running}" and containers_named(container)
        socket_dir = Path((first.store / "socket-dir").read_text().strip())
        assert (socket_dir / "hub.sock").exists()
    second = hub_factory(store=first.store)
    with second.client() as c:
        assert {s["id"]: s["name"] for s in c.get("/sequences").json()} == {seq: "greeter", running_seq: "events"}
        after = c.get(f"/instance/{done}").json()
        assert after == before
        lost = c.get(f"/instance/{running}").json()
        assert lost["status"] == "errored" and "hub stopped while this Instance was running" in lost["reason"]
        if runtime == "docker":
            assert f"container {container} (" in lost["reason"] and "now removed" in lost["reason"]
            assert containers_named(container) == []
            assert not socket_dir.exists(), "the dead hub's socket directory is removed too"
            assert c.get(f"/instance/{done}").json()["container"] == f"sequence-{done}"
        assert {i["id"] for i in c.get("/instances").json()} >= {done, running}
        assert c.get(f"/sequence/{seq}/instances").json() == [done]
        again = start(c, seq)  # a restored Sequence starts
        c.post(f"/instance/{again}/input", content=b"y\n", headers=TEXT)
        assert c.get(f"/instance/{again}/output").content == b"Hello y!\n"
        assert wait_ended(c, again)["status"] == "completed"
