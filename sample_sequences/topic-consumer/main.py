"""Read lines from the "names" topic and answer "Got: <line>"."""

requires = {"requires": "names", "contentType": "text/plain"}


async def run(context, input):
    async for line in input:
        yield f"Got: {line}"
