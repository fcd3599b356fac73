"""Copy binary input to the output unchanged, chunk by chunk."""

provides = {"provides": "", "contentType": "application/octet-stream"}


async def run(context, input):
    async for chunk in input:
        yield chunk
