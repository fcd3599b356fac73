"""Transports: how the runner core reaches its host.

``base`` is the interface the core uses; ``native`` speaks protocol v1 over one
stream socket. An STH-compatible transport (nine TCP connections, JSON lines)
implements the same interface later.
"""
