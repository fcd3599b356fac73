"""sequence-runner: the runner process for streaming Python Sequences.

Importing this package is cheap and has no side effects: hubs import it (and
``runner.protocol``) without starting anything.
"""

__version__ = "0.1.0"
