"""Spin in a synchronous loop that never gives the event loop a turn.

Nothing but kill can end it: stop handlers, events and heartbeats cannot run.
"""


def run(context, input):
    print("Spinning.", flush=True)
    n = 0
    while True:
        n += 1
