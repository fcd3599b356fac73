"""What makes ``STHHost(protocol="0.18")`` an 0.18-style host (``@scramjet/host`` 0.18.7).

Read from 0.18.7's code and seen live (docs/sth-compat.md §6): its process adapter passes only
PATH, PYTHONPATH (the runner's directory[:the hub's PYTHONPATH], no ``__pypackages__``),
DEVELOPMENT, PRODUCTION, SEQUENCE_PATH, INSTANCES_SERVER_PORT/HOST and INSTANCE_ID (no
SEQUENCE_INFO, RUNNER_CONNECT_INFO, no ``runnerEnvs``); it takes eight connections (a ninth
throws); it never sends MONITORING_REPLY; PONG is the start request's ``{appConfig, args}``;
and every PANG naming a topic routes it again: ``requires`` pipes the topic into IN (and writes
``[3013, {connected: true}]`` on CONTROL), ``provides`` pipes OUT into the topic, with or without
a content type.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from host_bridge.sth.spawn import project_root
from runner.protocol import sth

if TYPE_CHECKING:
    from .instance import STHInstance

PROTOCOLS = ("1.0", "0.18")


def channel_count(protocol: str) -> int:
    return 8 if protocol == "0.18" else sth.CHANNEL_COUNT


def runner_env_0_18(
    *,
    sequence_path: str,
    instance_id: str,
    port: int,
    host: str = "127.0.0.1",
    runner_pythonpath: str | None = None,
    extra: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The runner's environment as 0.18.7's process adapter builds it. ``extra`` (tests' tuning,
    e.g. SEQUENCE_RUNNER_STH_EXIT_TIMEOUT_MS) has no counterpart there: 0.18.7 passes nothing else."""
    base = os.environ if base_env is None else base_env
    pythonpath = runner_pythonpath or project_root()
    if base.get("PYTHONPATH"):
        pythonpath += ":" + base["PYTHONPATH"]
    env = {k: base[k] for k in ("PATH", "DEVELOPMENT", "PRODUCTION") if k in base}
    env.update({
        "PYTHONPATH": pythonpath,
        "SEQUENCE_PATH": sequence_path,
        "INSTANCES_SERVER_PORT": str(port),
        "INSTANCES_SERVER_HOST": host,
        "INSTANCE_ID": instance_id,
    })
    env.update(extra or {})
    return env


def on_pang_0_18(inst: STHInstance, data: dict[str, Any]) -> bytes:
    """0.18.7's CSIController and host on a PANG: the routings it makes (counted on ``inst``) and the
    CONTROL bytes it writes (3013 ``{connected: true}`` after routing a topic into IN)."""
    requires, provides = data.get("requires") or "", data.get("provides") or ""
    if provides:
        inst.provides = inst.provides or provides
    elif requires:
        inst.requires = inst.requires or requires
    control = b""
    if requires:
        inst.topic_routings += 1
        inst.input_from_topic = True
        inst.input_headers_sent = True
        control = sth.encode_host_message(sth.STHCode.INPUT_CONTENT_TYPE, {"connected": True})
    if provides:
        inst.output_routings += 1
    return control
