"""Runners started outside the bridge (a container, a pod) that the bridge still supervises.

``Bridge.launch(start)`` registers an Instance (id + token, as ``expect``), awaits
``start(instance)``, which starts the runner somewhere and returns an
``ExternalRunner``: something the bridge can wait on and signal. From there the
Instance is supervised like a spawned one: a runner that dies before connecting
ends it at once (not at the handshake timeout); a runner that does not exit after
KILL gets SIGTERM, then SIGKILL, through ``signal()``; and the report carries the
exit code and OOM kill as whatever ran the runner saw them.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .instance import Instance


@dataclass(frozen=True)
class RunnerExit:
    """How an external runner ended, as its runtime reports it (e.g. a container engine's State)."""

    exit_code: int | None  # None: the runtime could not tell
    oom_killed: bool = False  # the runtime's memory limit killed it (e.g. Docker's State.OOMKilled)
    detail: str | None = None  # what the runtime said about the end, for the Instance's error text


class ExternalRunner(Protocol):
    """What the bridge needs from a runner it did not start itself."""

    async def wait(self) -> RunnerExit:
        """Return once the runner has ended (and how). Called once, by the supervision task."""
        ...

    async def signal(self, sig: signal.Signals) -> None:
        """Deliver ``sig`` (SIGTERM, then SIGKILL) to the runner; a runner that already ended is no error."""
        ...


#: ``start(instance)``: start the runner for ``instance`` (its ``id`` and ``token`` go to the runner,
#: with a listener's address) and return the handle; raise to report that it could not be started.
RunnerStarter = Callable[["Instance"], Awaitable[ExternalRunner]]
