"""NDJSON identity: every record is decoded, yielded and encoded again, item by item."""

requires = {"requires": "", "contentType": "application/x-ndjson"}
provides = {"provides": "", "contentType": "application/x-ndjson"}


async def run(context, input):
    async for record in input:
        yield record
