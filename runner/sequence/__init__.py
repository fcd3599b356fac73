"""Everything about the Sequence itself, with no I/O of its own.

See docs/internals.md for the API. Submodules are imported lazily by users
(``from runner.sequence.loader import load_sequence``); importing this package
imports nothing heavy.
"""
