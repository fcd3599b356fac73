"""A dependency that only exists inside the Sequence's __pypackages__."""


def greet(name):
    return f"greetings, {name}, from {__file__}"
