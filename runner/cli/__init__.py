"""The command line for people: ``python -m runner run|pack`` (and the ``sequence-runner`` script).

The only part of ``runner`` that imports host_bridge (child.py, to run the
Sequence in a real runner child process, as a hub would):

    commands.py  dispatch: run (child.py or inline.py) and pack (pack.py)
    options.py   help texts, parsers, RunOptions
    child.py     run through host_bridge; inline.py  run in this process (debuggers)
    render.py    everything but the output, on stderr; sources.py  input files and stdin
    pack.py      build a package a hub accepts

Imports point one way (commands -> child/inline/pack -> options/render/sources),
so there is no circle between them.
"""

from __future__ import annotations

from .commands import main

__all__ = ["main"]
