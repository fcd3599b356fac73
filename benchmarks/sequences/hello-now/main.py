"""Yield one line at once, without reading input (spawn -> first output)."""

provides = {"provides": "", "contentType": "text/plain"}


async def run(context, input):
    yield "hello\n"
