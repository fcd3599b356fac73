"""Octet-stream identity: every input chunk goes out unchanged (bulk throughput)."""

requires = {"requires": "", "contentType": "application/octet-stream"}
provides = {"provides": "", "contentType": "application/octet-stream"}


async def run(context, input):
    async for chunk in input:
        yield chunk
