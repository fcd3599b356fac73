"""Which STH host started the runner: the protocol profile, decided once from the environment.

STH's hubs start the Python runner the same way (``/usr/bin/env python3 runner.py
./python-runner-startup.log``) but two generations of their runner protocol are in use:

* **1.0.x** (what docs/sth-compat.md describes): the environment holds ``SEQUENCE_INFO`` and
  ``RUNNER_CONNECT_INFO``; nine connections (channel 8 is the hub-API tunnel); the host answers
  every heartbeat with MONITORING_REPLY; ``<sequenceDir>/__pypackages__`` is on ``PYTHONPATH``.
* **0.18.x** (``@scramjet/host`` 0.18.7, the one on the npm mirror; docs/sth-compat.md §6): only
  ``SEQUENCE_PATH``, ``INSTANCES_SERVER_HOST``/``PORT``, ``INSTANCE_ID`` (plus PATH, PYTHONPATH,
  DEVELOPMENT, PRODUCTION); eight connections (a ninth throws in its socket server, and under
  Node >= 15 that ends the hub); no MONITORING_REPLY (code 4004 does not exist there);
  appConfig/args only in PONG; ``__pypackages__`` not on ``PYTHONPATH``; the exit code is the
  process's own (nothing reads ``/tmp/runner-<pid>``, so the runner does not leave one behind).

``profile_for(env)`` is the one place that tells them apart; everything that differs reads it
from ``STHConfig.profile``. Standard library only, and nothing imported: STH mode reads it
before PING (runner/hello.py).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["STH_0_18", "STH_1_0", "STHProfile", "profile_for"]

#: What every STH host passes (the 0.18.x environment is exactly these, plus PATH & co).
_COMMON_ENV = ("SEQUENCE_PATH", "INSTANCES_SERVER_HOST", "INSTANCES_SERVER_PORT", "INSTANCE_ID")
#: What STH 1.0.x passes on top (absent, both, on 0.18.x).
_INFO_ENV = ("SEQUENCE_INFO", "RUNNER_CONNECT_INFO")
#: Present (non-empty) on a 0.18-style host: how it is recognised, with both of _INFO_ENV absent.
_0_18_MARKERS = ("SEQUENCE_PATH", "INSTANCES_SERVER_PORT", "INSTANCE_ID")


class STHProfile:
    """What differs between STH host generations (a plain class: nothing imported before PING)."""

    __slots__ = ("channels", "exit_code_file", "host_replies", "info_in_env", "label", "pypackages_on_path",
                 "required_env")

    def __init__(self, label: str, *, channels: int, host_replies: bool, info_in_env: bool,
                 pypackages_on_path: bool, exit_code_file: bool) -> None:
        #: "1.0" or "0.18", for logs and docs.
        self.label = label
        #: Connections the host expects, channels 0..channels-1 (1.0.x: 9, with PACKAGE; 0.18.x: 8).
        self.channels = channels
        #: The host answers each heartbeat with MONITORING_REPLY, so its absence means the host is gone.
        self.host_replies = host_replies
        #: SEQUENCE_INFO / RUNNER_CONNECT_INFO are in the environment (else: built from SEQUENCE_PATH
        #: and its package.json, and appConfig/args come from PONG alone).
        self.info_in_env = info_in_env
        #: The host puts ``<sequenceDir>/__pypackages__`` on PYTHONPATH (else the runner adds it).
        self.pypackages_on_path = pypackages_on_path
        #: The host's process adapter reads the exit code from ``/tmp/runner-<pid>`` (else from the
        #: process: a file written there would only be left behind, one per Instance).
        self.exit_code_file = exit_code_file
        self.required_env = _COMMON_ENV + (_INFO_ENV if info_in_env else ())

    def __repr__(self) -> str:
        return f"STHProfile({self.label!r})"


STH_1_0 = STHProfile("1.0", channels=9, host_replies=True, info_in_env=True, pypackages_on_path=True,
                     exit_code_file=True)
STH_0_18 = STHProfile("0.18", channels=8, host_replies=False, info_in_env=False, pypackages_on_path=False,
                      exit_code_file=False)


def profile_for(env: Mapping[str, str]) -> STHProfile:
    """0.18 when ``SEQUENCE_PATH``, ``INSTANCES_SERVER_PORT`` and ``INSTANCE_ID`` are set and neither
    ``SEQUENCE_INFO`` nor ``RUNNER_CONNECT_INFO`` is in the environment at all; else 1.0 (whose
    checks then name whatever is missing, as they always did)."""
    if any(name in env for name in _INFO_ENV):
        return STH_1_0
    if all(env.get(name) for name in _0_18_MARKERS):
        return STH_0_18
    return STH_1_0
