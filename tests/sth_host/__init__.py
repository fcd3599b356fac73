"""An STH-protocol host for tests and benchmarks (not shipped: hubs use host_bridge).

``STHHost`` listens like Scramjet Transform Hub's instance server and spawns
runners like its process adapter (host_bridge.sth's spawn helpers), so the
project tests STH compatibility without Node; docs/sth-compat.md §8. It shares
host_bridge's process code (``signal_group``, ``Escalation``) and channel buffers
(``ByteChannel``) instead of copying them. Import it as ``sth_host`` (tests/ is on
pytest's path; benchmarks/common.py puts it on theirs).
"""

from runner.protocol.stop import DEFAULT_EXIT_GRACE

from .exits import EXIT_CODE_UNKNOWN
from .host import STHHost
from .instance import STHError, STHInstance, STHInstanceGone, STHStartError

__all__ = [
    "DEFAULT_EXIT_GRACE",
    "EXIT_CODE_UNKNOWN",
    "STHError",
    "STHHost",
    "STHInstance",
    "STHInstanceGone",
    "STHStartError",
]
