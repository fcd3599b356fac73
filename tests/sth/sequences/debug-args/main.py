"""E2E-015 TC-004: the two positional arguments of run() as JSON."""

import json


def run(context, input, first_arg, second_arg):
    async def out():
        yield json.dumps({"first_arg": first_arg, "second_arg": second_arg}, separators=(",", ":"))

    return out()
