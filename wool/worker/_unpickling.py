"""Unpickling what a caller sent, with errors that say how to fix them.

What a caller pickled by reference (its routines, and the classes and functions in its
arguments) is imported again on the worker: a module the worker cannot import is the
usual cause of a failure, and the fix is on the worker's side (its `sys.path`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .. import protocol as p
from .._errors import SerializationError


def explain(what: str, error: Exception) -> SerializationError:
    """A `SerializationError` saying why `what` could not be unpickled here, and how to fix
    it when a module could not be imported (raise it `from error`)."""
    if isinstance(error, ImportError) and error.name:
        return SerializationError(
            f"{what} could not be unpickled on this worker: it cannot import module {error.name!r}. "
            f"Make the module importable where the worker runs: set PYTHONPATH to include the directory "
            f"that holds it, or start the worker from the project directory (it runs in {os.getcwd()})"
        )
    return SerializationError(f"{what} could not be unpickled on this worker: {type(error).__name__}: {error}")


def loads(what: str, frames: Sequence[p.Frame]) -> Any:
    """`p.loads(frames)`, raising `explain(what, ...)` from the original error."""
    try:
        return p.loads(frames)
    except Exception as e:
        raise explain(what, e) from e
