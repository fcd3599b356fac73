"""Transports: how the runner core reaches its host.

``base`` is the interface the core uses; ``native`` speaks protocol v1 over one
stream socket; ``sth`` speaks Scramjet Transform Hub's protocol (nine TCP
connections, JSON lines; the mapping itself is runner/protocol/sth_translator.py).
"""
