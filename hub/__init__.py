"""The reference hub: ``python -m hub`` serves the REST API (Hub, Sequence, Instance and Topic
operations) over HTTP, running Sequences through host_bridge. See docs/hub.md."""

from runner import __version__

__all__ = ["__version__"]
