"""Text identity: every input line (with its newline) goes out unchanged, item by item."""

requires = {"requires": "", "contentType": "text/plain"}
provides = {"provides": "", "contentType": "text/plain"}


async def run(context, input):
    async for line in input:
        yield line
