"""A Sequence made of three functions: each one reads the previous one's output.

Text lines with integers in, their doubles out, one per line.
"""


async def parse(context, input):
    """Text lines -> ints (blank lines are skipped)."""
    async for line in input:
        if line.strip():
            yield int(line)


async def double(context, input):
    """ints -> ints times two."""
    async for n in input:
        yield n * 2


async def format(context, input):
    """ints -> text lines."""
    async for n in input:
        yield f"{n}\n"


run = [parse, double, format]
