"""The command line for people: ``python -m runner run|pack`` (and the ``sequence-runner`` script).

The only part of ``runner`` that imports host_bridge (child.py, to run the
Sequence in a real runner child process, as a hub would):

    commands.py  dispatch: run (child.py or inline.py) and pack (pack.py)
    options.py   parsers and RunOptions (helptext.py: the long help; envfile.py: --env files)
    child.py     run through host_bridge; inline.py  run in this process (debuggers)
    render.py    everything but the output, on stderr; stats.py  the summary line and live stats
    sources.py   input files and stdin on reader threads; events_in.py  --event/--events-from
    pack.py      build a package a hub accepts

Imports point one way (commands -> child/inline/pack -> options/render/stats/sources/...),
so there is no circle between them.
"""

from __future__ import annotations

from .commands import main

__all__ = ["main"]
