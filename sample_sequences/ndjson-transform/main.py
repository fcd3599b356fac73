"""Add ``"seen": true`` and a running count ``"n"`` to every NDJSON object.

Values that are not objects are wrapped as ``{"value": <value>}`` first.
"""

provides = {"provides": "", "contentType": "application/x-ndjson"}


async def run(context, input):
    n = 0
    async for item in input:
        n += 1
        obj = dict(item) if isinstance(item, dict) else {"value": item}
        obj["seen"] = True
        obj["n"] = n
        yield obj
