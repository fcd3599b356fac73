"""The host's last resort for one runner: SIGTERM, then SIGKILL, on one deadline.

The protocol's own deadlines (the stop timeout → KILL, the exit grace after
KILL/SEQUENCE_STOPPED/SEQUENCE_COMPLETED) live in the sans-IO Connection and
are fed by the link's timer. What is left to the host process is what the
protocol cannot do: signal a runner that does not exit. ``Escalation`` keeps one
deadline for that, run by one task: at the deadline the process group gets
SIGTERM, and ``term_grace`` later SIGKILL. Asking again only ever moves the
deadline earlier; ``kill_now()`` sends SIGKILL at once. A runner that connected
in (no process here) can only be hung up on.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from functools import partial

import anyio

from .process import signal_group


class Escalation:
    def __init__(
        self,
        pid: int | None,
        term_grace: float,
        exited: anyio.Event,
        hang_up: Callable[[], None],
        deliver: Callable[[signal.Signals], None] | None = None,
    ) -> None:
        self.pid = pid
        self._deliver = deliver if deliver is not None else (partial(signal_group, pid) if pid is not None else None)
        self.term_grace = term_grace
        self.exited = exited
        self._hang_up = hang_up
        self.signalled = False  # the host sent the runner a signal (its death is then the host's doing)
        self.sent: list[signal.Signals] = []
        self._deadline: float | None = None
        self._term_sent = False
        self._changed = anyio.Event()

    def terminate_at(self, when: float) -> None:
        """SIGTERM the runner's group at ``when`` (anyio time) unless it exited; earlier requests win."""
        if self._deliver is None:
            if when <= anyio.current_time():
                self._hang_up()  # a connected-in runner: all the host can do is hang up
            return
        if self._term_sent or self.exited.is_set():
            return
        if self._deadline is None or when < self._deadline:
            self._deadline = when
            self._changed.set()

    def terminate(self) -> None:
        """SIGTERM now, SIGKILL after ``term_grace``."""
        self.terminate_at(anyio.current_time())

    def kill_now(self) -> None:
        """SIGKILL the runner's group now."""
        if self._deliver is None:
            self._hang_up()
            return
        if not self.exited.is_set():
            self._send(signal.SIGKILL)

    def _send(self, sig: signal.Signals) -> None:
        assert self._deliver is not None
        self.signalled = True
        self.sent.append(sig)
        self._deliver(sig)

    def wake(self) -> None:
        """Call when the process exited, so ``run`` returns."""
        self._changed.set()

    async def run(self) -> None:
        """The one task behind the deadline; returns once the process exited."""
        if self._deliver is None:
            return
        while not self.exited.is_set():
            if self._changed.is_set():
                self._changed = anyio.Event()
            deadline = self._deadline
            if deadline is None:
                await self._changed.wait()
                continue
            delay = deadline - anyio.current_time()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._changed.wait()
                continue  # re-read the deadline: it may have moved, or now be due
            self._deadline = None
            if self.exited.is_set():
                return
            if not self._term_sent:
                self._term_sent = True
                self._send(signal.SIGTERM)
                self._deadline = anyio.current_time() + self.term_grace
            else:
                self._send(signal.SIGKILL)
