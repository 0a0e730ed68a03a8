"""`wool.state()`: what a worker's lifespan yielded, read by the routines running on it.

The worker installs one `WorkerState` in its context before its server starts, so every call
task (whose context is a copy of the server's) sees the same object; the lifespan fills it
in once it has been entered. A holder rather than the value itself: a context variable set
later would not reach the copies already made.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any


class WorkerState:
    """The lifespan's value on this worker, and whether it is ready to be read."""

    __slots__ = ("value", "ready", "name")

    def __init__(self, name: str | None = None) -> None:
        self.value: Any = None
        self.ready = name is None  # without a lifespan there is nothing to wait for
        self.name = name  # the lifespan factory's name, for errors


worker_state_var: ContextVar[WorkerState | None] = ContextVar("wool_worker_state", default=None)


def state() -> Any:
    """What the worker's lifespan yielded, inside a routine running on a worker.

    Returns:
        The value the lifespan (`WorkerPool(lifespan=...)`) yielded, once per worker
            process; `None` if the worker has no lifespan.

    Raises:
        RuntimeError: Called anywhere but in a routine running on a worker, or in a routine
            that runs on this worker while its lifespan is still being entered (a nested
            call the lifespan made).

    Example:
        ```python
        @contextlib.asynccontextmanager
        async def load_model():
            yield {"model": load("model.bin")}     # once per worker

        @wool.routine
        async def predict(x: list[float]) -> float:
            return wool.state()["model"].predict(x)
        ```
    """
    holder = worker_state_var.get()
    if holder is None:
        raise RuntimeError(
            "wool.state() only works inside a routine running on a worker: it returns what that worker's lifespan yielded"
        )
    if not holder.ready:
        raise RuntimeError(f"wool.state() was called while this worker's lifespan {holder.name} was still being entered")
    return holder.value
