"""host_bridge: what hub servers import to run Sequences in runner processes.

    async with Bridge() as bridge:
        instance = await bridge.spawn("sample_sequences/hello")
        await instance.send_input(["Alice\\n"])
        async for line in instance.output_items():
            print(line, end="")
        print(await instance.wait(), instance.status)

See docs/host_bridge.md. The wire protocol stays inside (runner.protocol).
"""

from runner.protocol import State, Status, status_for_exit_code

from .bridge import Bridge
from .errors import BridgeError, ChannelClosed, InstanceEnded, InstanceNotRunning, SpawnError
from .events import EventMemory, EventMessage, EventSubscription
from .external import ExternalRunner, RunnerExit, RunnerStarter
from .info import InstanceInfo
from .instance import Instance
from .listeners import Listener, Refusal
from .options import InstanceOptions, OptionOverrides
from .state import InstanceState, StateSubscription
from .stats import ChannelStats, Health, HeartbeatStats, HeartbeatUpdates

__all__ = [
    "Bridge",
    "BridgeError",
    "ChannelClosed",
    "ChannelStats",
    "EventMemory",
    "EventMessage",
    "EventSubscription",
    "ExternalRunner",
    "Health",
    "HeartbeatStats",
    "HeartbeatUpdates",
    "Instance",
    "InstanceEnded",
    "InstanceInfo",
    "InstanceNotRunning",
    "InstanceOptions",
    "InstanceState",
    "Listener",
    "OptionOverrides",
    "Refusal",
    "RunnerExit",
    "RunnerStarter",
    "SpawnError",
    "State",
    "StateSubscription",
    "Status",
    "status_for_exit_code",
]
