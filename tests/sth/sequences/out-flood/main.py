"""Output as fast as possible, forever: a host that stops reading OUT must still be able to kill it."""


async def run(context, input):
    block = b"y" * 65536
    while True:
        yield block


provides = {"provides": "", "contentType": "application/octet-stream"}
