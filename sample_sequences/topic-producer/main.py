"""Publish a few names, one per line, on the "names" topic."""

provides = {"provides": "names", "contentType": "text/plain"}

NAMES = ["Alice", "Bob", "Carol"]


async def run(context, input):
    for name in NAMES:
        yield f"{name}\n"
