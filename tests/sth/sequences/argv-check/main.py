"""Reports sys.argv and the working directory: STH's startup-log argument must not leak."""

import json
import os
import sys


async def run(context, input):
    yield json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "config": context.config}) + "\n"
