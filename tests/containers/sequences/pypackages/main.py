"""Imports a dependency shipped in the package's __pypackages__ (as `si seq pack` packages have)."""

import greeting


async def run(context, input):
    async for line in input:
        yield greeting.greet(line.strip()) + "\n"
