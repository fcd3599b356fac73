"""Fails on start: imports a module that is not there (exit 22)."""

import module_that_is_not_installed  # noqa: F401


async def run(context, input):
    yield "never\n"
