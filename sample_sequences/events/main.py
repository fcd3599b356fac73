"""Answer events: "ping" -> "pong", "test-event" -> "test-response" (STH E2E).

Each reply is f"reply to {message}". Runs until the instance is stopped.
"""

import asyncio

REPLIES = {"ping": "pong", "test-event": "test-response"}


async def run(context, input):
    def replier(event, reply):
        def on_event(message):
            context.logger.info("Got %r with %r, replying with %r", event, message, reply)
            context.emit(reply, f"reply to {message}")

        return on_event

    for event, reply in REPLIES.items():
        context.on(event, replier(event, reply))

    while True:
        await asyncio.sleep(1)
