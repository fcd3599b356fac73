"""What only the docker runtime does: containers confined and limited as docs/deploy.md says, limits
from the hub's config and the start request, an OOM kill as the Instance's end, a missing image named
at start-up. (The REST flows themselves run in docker mode through the parametrized fixtures.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker_engine import IMAGE, require_docker
from flows import start, wait_ended
from hubproc import ROOT, HubProcess, package, runtime_args

MiB = 1 << 20
HOG = ROOT / "tests" / "containers" / "sequences" / "memory-hog"


def inspect(container: str) -> dict[str, Any]:
    done = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=False)
    return json.loads(done.stdout)[0] if done.returncode == 0 else {}


@pytest.fixture
def docker_hub(tmp_path: Path) -> Iterator[Any]:
    require_docker((IMAGE,))
    started: list[HubProcess] = []

    def make(*args: str) -> HubProcess:
        hub = HubProcess(tmp_path / f"store{len(started)}", *runtime_args("docker"), *args).start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        assert hub.stop() == 0, hub.output()


@pytest.mark.docker
def test_each_container_is_confined_limited_and_removed(docker_hub: Any) -> None:
    hub = docker_hub("--memory-limit", "300", "--cpu-limit", "1")
    with hub.client() as c:
        seq = c.post("/sequence", content=package("events")).json()["id"]
        limited = start(c, seq, limits={"memory": 200, "cpu": 0.5})
        default = start(c, seq)
        boxes = {inst: inspect(f"sequence-{inst}") for inst in (limited, default)}
        for inst, box in boxes.items():
            host = box["HostConfig"]
            assert box["Config"]["User"] == "runner" and box["State"]["Running"]
            assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
            assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
            assert not host["Privileged"] and host["MemorySwap"] == host["Memory"]
            # only the hub's socket directory and the package (read-only): never the Docker socket
            assert [b.split(":")[1:] for b in host["Binds"]] == [["/run/hub"], ["/package", "ro"]]
            assert "docker.sock" not in json.dumps(box)
            env = dict(e.split("=", 1) for e in box["Config"]["Env"])
            assert env["SEQUENCE_RUNNER_INSTANCE_ID"] == inst and env["SEQUENCE_RUNNER_CONNECT"] == "unix:/run/hub/hub.sock"
            assert box["Config"]["Labels"]["org.sequence-runner.instance"] == inst
        tokens = {box["Config"]["Env"][2] for box in boxes.values()}
        assert len(tokens) == 2, "every Instance has its own token"
        assert (boxes[limited]["HostConfig"]["Memory"], boxes[limited]["HostConfig"]["NanoCpus"]) == (200 * MiB, 5 * 10**8)
        assert (boxes[default]["HostConfig"]["Memory"], boxes[default]["HostConfig"]["NanoCpus"]) == (300 * MiB, 10**9)
        assert c.get(f"/instance/{limited}").json()["limits"] == {"memory": 200, "cpu": 0.5}
        assert c.get("/config").json()["runtime"]["defaultLimits"] == {"memory": 300, "cpu": 1}
        for inst in (limited, default):
            assert c.post(f"/instance/{inst}/_stop", json={"timeout": 1000}).status_code == 202
            ended = wait_ended(c, inst)
            assert (ended["status"], ended["exitCode"]) == ("stopped", 138)
            assert inspect(f"sequence-{inst}") == {}, "the container is removed when the Instance ends"


@pytest.mark.docker
def test_an_oom_kill_is_the_instance_s_status_and_reason(docker_hub: Any) -> None:
    hub = docker_hub()
    with hub.client() as c:
        seq = c.post("/sequence", content=package(HOG)).json()["id"]
        inst = start(c, seq, limits={"memory": 96})
        ended = wait_ended(c, inst, timeout=60)
    assert (ended["status"], ended["exitCode"]) == ("errored", 137), ended
    assert "OOMKilled" in ended["reason"] and "96 MiB" in ended["reason"], ended["reason"]
    assert inspect(f"sequence-{inst}") == {}


@pytest.mark.docker
def test_a_missing_image_is_named_when_the_hub_starts(tmp_path: Path) -> None:
    require_docker((IMAGE,))
    hub = HubProcess(tmp_path / "store", "--runtime", "docker", "--runner-image", "sequence-runner:no-such-tag")
    with pytest.raises(RuntimeError) as failed:
        hub.start()
    assert "image sequence-runner:no-such-tag is not in the engine" in str(failed.value)
    assert hub.proc is not None and hub.proc.returncode not in (None, 0)


@pytest.mark.parametrize("limits, message", [
    ({"memory": 2}, "limits.memory must be a number of MiB from 8"),
    ({"cpu": "1"}, "limits.cpu must be a number of CPUs from 0.01"),
    ({"disk": 1}, "limits must be a JSON object"),
    ([1], "limits must be a JSON object"),
])
def test_bad_limits_are_refused_naming_the_field(client: httpx.Client, upload: Any, limits: Any,
                                                 message: str) -> None:
    r = client.post(f"/sequence/{upload('hello')}/start", json={"limits": limits})
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_limits_need_a_runtime_that_enforces_them(client: httpx.Client, upload: Any, runtime: str) -> None:
    r = client.post(f"/sequence/{upload('hello')}/start", json={"limits": {"memory": 64}})
    if runtime == "process":  # refused, not silently ignored
        assert r.status_code == 400 and "the process runtime cannot enforce them" in r.json()["error"], r.text
        return
    assert r.status_code == 200, r.text
    inst = r.json()["id"]
    assert client.get(f"/instance/{inst}").json()["limits"] == {"memory": 64, "cpu": None}
    assert client.post(f"/instance/{inst}/input", content=b"x\n", headers={"content-type": "text/plain"}).status_code == 200
    assert wait_ended(client, inst)["status"] == "completed"


def test_without_an_engine_the_hub_says_so_and_does_not_start(tmp_path: Path) -> None:
    """Needs no engine: a socket path where none listens."""
    hub = HubProcess(tmp_path / "store", "--runtime", "docker", "--docker-host", f"unix://{tmp_path}/none.sock")
    with pytest.raises(RuntimeError) as failed:
        hub.start()
    assert f"hub: --runtime docker: no Docker engine answers at unix://{tmp_path}/none.sock" in str(failed.value)
    assert hub.proc is not None and hub.proc.returncode not in (None, 0)


def test_docker_settings_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from hub.config import parse_config

    config = parse_config([], {"SEQUENCE_HUB_RUNTIME": "docker", "SEQUENCE_HUB_MEMORY_LIMIT": "64",
                               "SEQUENCE_HUB_CPU_LIMIT": "0.5", "SEQUENCE_HUB_RUNNER_IMAGE": "mine:1"})
    assert (config.runtime, config.memory_limit_mib, config.cpu_limit, config.runner_image) == ("docker", 64, 0.5, "mine:1")
    assert config.public()["runtimeAdapter"] == "docker"
    for argv, message in ((["--runtime", "kubernetes"], "'kubernetes' is not a runtime: choose process or docker"),
                          (["--docker-host", "tcp://10.0.0.1:2375"], "only a unix socket is supported")):
        with pytest.raises(SystemExit):
            parse_config(argv, {})
        assert message in capsys.readouterr().err
