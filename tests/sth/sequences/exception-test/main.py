"""E2E-014 TC-003: an exception raised by run() must appear on stderr."""


class TestException(Exception):
    pass


async def run(context, input):
    raise TestException("This exception should appear on stderr")
