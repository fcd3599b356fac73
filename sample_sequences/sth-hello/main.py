"""The hello Sequence as written for Scramjet Transform Hub, unchanged.

It returns a scramjet-framework-py Stream instead of being a generator.
"""

from scramjet.streams import Stream


def run(context, input):
    return Stream.read_from(input).map(lambda s: f"Hello {s.strip()}!\n")
