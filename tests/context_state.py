"""Routines reporting a worker's process-wide context-variable state, for the tests that
send a worker hostile context frames."""

from __future__ import annotations

import wool
from wool.caller import _contextvars

TRACE: wool.ContextVar[object] = wool.ContextVar("trace", namespace="tests.context_state")


@wool.routine
async def process_wide_variables() -> int:
    """How many variables this worker's process holds storage for (one per key ever seen,
    before keys from peers were held per call)."""
    return len(_contextvars._storage)


@wool.routine
async def read(namespace: str, name: str) -> object:
    """The value of the variable (`namespace`, `name`) in this call, created here if no module
    of this worker did."""
    return wool.ContextVar(name, namespace=namespace).get(None)
