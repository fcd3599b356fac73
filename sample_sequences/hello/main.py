"""Greet every line of text input: "x\\n" -> "Hello x!\\n"."""


async def run(context, input):
    async for line in input:
        name = line.rstrip("\r\n")
        yield f"Hello {name}!\n"
