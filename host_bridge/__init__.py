"""host_bridge: what hub servers import to run Sequences in runner processes.

    async with Bridge() as bridge:
        instance = await bridge.spawn("sample_sequences/hello")
        await instance.send_input(["Alice\\n"])
        async for line in instance.output_items():
            print(line, end="")
        print(await instance.wait(), instance.status)

See docs/host_bridge.md. The wire protocol stays inside (runner.protocol).
"""

from runner.protocol import Status, status_for_exit_code

from .bridge import Bridge, Listener, Refusal
from .channels import EventMessage, EventSubscription
from .errors import BridgeError, ChannelClosed, InstanceNotRunning, SpawnError
from .info import Health, InstanceInfo
from .instance import Instance
from .options import InstanceOptions

__all__ = [
    "Bridge",
    "BridgeError",
    "ChannelClosed",
    "EventMessage",
    "EventSubscription",
    "Health",
    "Instance",
    "InstanceInfo",
    "InstanceNotRunning",
    "InstanceOptions",
    "Listener",
    "Refusal",
    "SpawnError",
    "Status",
    "status_for_exit_code",
]
