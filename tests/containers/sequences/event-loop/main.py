"""Yields the module of the event loop the runner runs this Sequence on ("uvloop" or "asyncio"),
and which frame codec it uses ("cython" or "python"), as "asyncio cython\\n"."""

import asyncio

from runner.protocol import framer


async def run(context, input):
    loop_module = type(asyncio.get_running_loop()).__module__.split(".")[0]
    yield f"{loop_module} {framer.IMPLEMENTATION}\n"
