"""docs/hub.md: the curl examples run, in order, against a real hub, and print what they say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hubproc import ROOT


def endpoint_blocks() -> list[str]:
    text = (ROOT / "docs" / "hub.md").read_text()
    section = text.split("## Every endpoint, with curl", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def test_every_endpoint_of_the_reference_has_a_curl_example() -> None:
    script = "".join(endpoint_blocks())
    for needle in ("/version", "/config", "/load-check", "$HUB/log", "/openapi.json", "$HUB/sequence ",
                   "/sequences", "/instances", "-X PUT", "/start", "/input", "/output", "/stdin", "/stdout",
                   "/stderr", "/log |", "/health", "/_event", "/once/", "/event/", "/_stop", "/_kill",
                   "/topic/", "/topics"):
        assert needle in script, needle


def test_the_curl_examples_run(hub_factory: Any) -> None:
    hub = hub_factory()
    env = dict(os.environ, HUB=hub.url, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    script = "set -u\n" + "\n".join(endpoint_blocks())
    done = subprocess.run(["bash", "-c", script], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    out = done.stdout
    assert "curl: (" not in done.stderr, done.stderr
    for expected in ('"apiVersion":"v1"', '"avgLoad"', "hub ready", '"openapi":"3.1.0"', "hello\n", "main.py\n",
                     "[]", "not a valid .tar.gz package", "Hello Alice!\nHello Bob!\n", "completed\n0\n",
                     "true\n", '"eventName":"ping"', '"reply to curl"', "stopping\n", "stopped\n138\n",
                     '{"ended":true}', "Got on stdin: hi\n", " 202\n", " 200\n",
                     '{"name":"Alice"}\n{"name":"Bob"}\n', '"name":"names"'):
        assert expected in out, f"{expected!r} not in:\n{out}\n{done.stderr}"
    # _kill of stdinout: 409 when it ended already, 202 when it was still exiting (a container ends later)
    assert re.search(r"Got on stdin: hi\n(202|409)\n", out), out


def test_the_readme_quick_start_runs(hub_factory: Any) -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Hub quick start", 1)[1].split("```sh\n")[2].split("```")[0]
    hub = hub_factory()
    script = block.replace("HUB=http://127.0.0.1:8000/api/v1", f"HUB={hub.url}")
    done = subprocess.run(["bash", "-c", "set -eu\n" + script], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("Hello Alice!\n"), done.stdout
