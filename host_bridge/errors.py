"""Exceptions of host_bridge, named after what went wrong with the Instance or the bridge."""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of host_bridge errors."""


class InstanceNotRunning(BridgeError):
    """The Instance has no open connection (not yet connected, or already ended)."""


class ChannelClosed(BridgeError):
    """Writing to a channel that was already ended, or after the Instance ended."""


class SpawnError(BridgeError):
    """The runner process could not be started (executable missing, bad cwd, ...)."""


class InstanceEnded(InstanceNotRunning):
    """The Instance ended before reaching what was awaited (e.g. ``wait_running()``)."""
