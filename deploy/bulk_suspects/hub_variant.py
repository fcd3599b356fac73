"""``python deploy/bulk_suspects/hub_variant.py HUB-ARGS``: ``python -m hub`` with one suspect of
docker mode's bulk cost changed, chosen by environment variables (deploy/bench_bulk_suspects.py).
Diagnostic only: the hub's code is patched in this process, nothing is changed on disk.

BULK_SUSPECTS_DEFAULT_SNDBUF=1    both ends of a runner's unix connection keep the kernel default
                                  send buffer (the hub's end here; the runner's end through
                                  sitecustomize.py mounted at /bulk-suspects in the container)
BULK_SUSPECTS_SECURITY_OPT=OPT    one more SecurityOpt for every container (seccomp=unconfined)
BULK_SUSPECTS_NO_MEMORY_LIMIT=1   containers without a memory limit (no memory cgroup limit)
BULK_SUSPECTS_RUNNER_PYTHON=PATH  process mode's runners run by this interpreter
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MOUNT = "/bulk-suspects"


def patch_send_buffer() -> None:
    import host_bridge.link

    host_bridge.link.SOCKET_BUFFER = None


def patch_containers(default_sndbuf: bool, security_opt: str, no_memory_limit: bool) -> None:
    from hub.runtimes import docker

    body = docker.DockerRuntime.container_body

    def changed_body(self: docker.DockerRuntime, *args: Any) -> dict[str, Any]:
        out = body(self, *args)
        host = out["HostConfig"]
        if default_sndbuf:
            with open("/proc/sys/net/core/wmem_default") as default:
                out["Env"] += [f"BULK_SUSPECTS_RUNNER_SNDBUF={default.read().strip()}", f"PYTHONPATH={MOUNT}"]
            host["Binds"].append(f"{HERE}:{MOUNT}:ro")
        if security_opt:
            host["SecurityOpt"].append(security_opt)
        if no_memory_limit:
            host["Memory"] = host["MemorySwap"] = 0
        return out

    docker.DockerRuntime.container_body = changed_body  # type: ignore[method-assign,assignment]


def patch_runner_python(python: str) -> None:
    from hub import config

    init = config.HubConfig.__init__

    def changed_init(self: config.HubConfig, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        object.__setattr__(self, "python", python)  # a frozen dataclass

    config.HubConfig.__init__ = changed_init  # type: ignore[method-assign]


def main() -> None:
    env = os.environ
    default_sndbuf = env.get("BULK_SUSPECTS_DEFAULT_SNDBUF") == "1"
    if default_sndbuf:
        patch_send_buffer()
    patch_containers(default_sndbuf, env.get("BULK_SUSPECTS_SECURITY_OPT", ""),
                     env.get("BULK_SUSPECTS_NO_MEMORY_LIMIT") == "1")
    if env.get("BULK_SUSPECTS_RUNNER_PYTHON"):
        patch_runner_python(env["BULK_SUSPECTS_RUNNER_PYTHON"])
    sys.argv = ["hub", *sys.argv[1:]]
    runpy.run_module("hub", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
