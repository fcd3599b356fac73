"""Write one line, then fail with an exception that must reach stderr."""


class TestException(Exception):
    """The error this Sequence raises on purpose."""


async def run(context, input):
    yield "about to fail\n"
    raise TestException("This exception should appear on stderr")
