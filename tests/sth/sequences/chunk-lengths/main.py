"""E2E-014 TC-006/007: the length of every input chunk, comma-separated.

Text input arrives as lines with their "\n" (lengths in characters), binary
input as the bytes received.
"""


async def run(context, input):
    async for chunk in input:
        yield f"{len(chunk)},"
