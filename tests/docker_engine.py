"""Is a Docker engine with the runner images here? Shared by tests/containers and tests/hub (docker runtime).

Found once per test process. Without an engine or image, tests that need one are skipped with the
reason, unless SEQUENCE_RUNNER_REQUIRE_DOCKER=1 (set by deploy/ci-containers.sh once it has an
engine), which turns a missing engine or image into a failure.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

IMAGE = os.environ.get("SEQUENCE_RUNNER_IMAGE", "sequence-runner:local")
STH_IMAGE = os.environ.get("SEQUENCE_RUNNER_STH_IMAGE", "sequence-runner:sth-local")


@functools.cache
def docker_unavailable(images: tuple[str, ...] = (IMAGE, STH_IMAGE)) -> str | None:
    """Why containers cannot run here, or None when the engine and ``images`` are there."""
    why = os.environ.get("SEQUENCE_RUNNER_DOCKER_UNAVAILABLE")  # set by deploy/ci-containers.sh
    if why:
        return why
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          check=False, capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip() or info.stdout.strip()}"
    for image in images:
        found = subprocess.run(["docker", "image", "inspect", image], check=False,
                               capture_output=True, timeout=30)
        if found.returncode != 0:
            return f"image {image} is not built (run scripts/build-image)"
    return None


def require_docker(images: tuple[str, ...] = (IMAGE, STH_IMAGE)) -> None:
    why = docker_unavailable(images)
    if why is None:
        return
    if os.environ.get("SEQUENCE_RUNNER_REQUIRE_DOCKER") == "1":
        pytest.fail(f"SEQUENCE_RUNNER_REQUIRE_DOCKER=1 but {why}")
    pytest.skip(why)
