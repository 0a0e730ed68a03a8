"""Which mesh a routine call dispatches through: the innermost open `WorkerPool`, or, inside a
worker, that worker's own mesh of peers; and, inside a worker, the slot of the call running.

A routine that awaits a nested routine gives its worker slot back while it waits (see
`worker._admission`): with a limit of concurrent calls, a fan-out whose parents held their
slots while their children queued for one would deadlock."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from .._errors import NoPoolError

if TYPE_CHECKING:
    from ._mesh import Mesh

current_mesh_var: ContextVar[Mesh | None] = ContextVar("wool_current_mesh", default=None)


class Slot(Protocol):
    """A running call's claim on its worker's capacity."""

    def lend(self) -> None: ...
    def reclaim(self) -> None: ...


current_slot_var: ContextVar[Slot | None] = ContextVar("wool_current_slot", default=None)


class waiting_on_peer:
    """Around a wait for a nested call: lends the running call's slot meanwhile. Entering
    gives whether this is such a nested call (inside a worker's call).

    A class rather than a `contextlib.contextmanager`: every routine call enters one, and a
    generator-based context manager costs two more objects and about 2 µs per call."""

    __slots__ = ("_slot",)

    def __enter__(self) -> bool:
        slot = self._slot = current_slot_var.get()
        if slot is None:
            return False
        slot.lend()
        return True

    def __exit__(self, *exc_info: object) -> None:
        if self._slot is not None:
            self._slot.reclaim()


def current_mesh(routine_name: str) -> Mesh:
    mesh = current_mesh_var.get()
    if mesh is None:
        raise NoPoolError(
            f"routine {routine_name} was called outside any worker pool: call it inside `async with wool.WorkerPool(...):`"
        )
    return mesh


# Inside a worker's call: the values that its top-level `wool.Shared` arguments arrived as (by
# id, with the value itself, whose id could otherwise be reused, and its handle), so that a
# routine passing one on to a nested call sends the handle again rather than the value.
shared_args_var: ContextVar[dict[int, tuple[object, object]] | None] = ContextVar("wool_shared_args", default=None)


def rehandle(args: tuple[object, ...], kwargs: dict[str, object]) -> tuple[tuple[object, ...], dict[str, object]]:
    """`args` and `kwargs` with each value that arrived as a `wool.Shared` argument of the
    running call replaced by that handle again."""
    table = shared_args_var.get()
    if not table:
        return args, kwargs

    def handle(v: object) -> object:
        found = table.get(id(v))
        return found[1] if found is not None and found[0] is v else v

    return tuple(handle(a) for a in args), {k: handle(v) for k, v in kwargs.items()}
