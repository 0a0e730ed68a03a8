"""Which mesh a routine call dispatches through: the innermost `WorkerPool` open in the
caller's context (or, inside a worker, that worker's own mesh of peers); where there is none,
the most recently opened pool of the process that is still open on the caller's event loop;
and, inside a worker, the slot of the call running.

The process-level fallback exists because a context does not always reach the code that
calls: ipykernel runs each notebook cell that contains a top-level `await` in a copy of the
context (ipykernel issue 749), so a pool opened in one cell is not in the context of the next.
A mesh belongs to the loop it was opened on (its sockets and futures are that loop's): a call
from another loop is refused with an error naming `pool.run(...)`, never sent.

A routine that awaits a nested routine gives its worker slot back while it waits (see
`worker._admission`): with a limit of concurrent calls, a fan-out whose parents held their
slots while their children queued for one would deadlock."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from .._errors import NoPoolError
from .._loopthread import running_loop

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


class OpenPool:
    """A pool open in this process: its mesh, the loop it runs on, and the pool itself."""

    __slots__ = ("mesh", "loop", "pool")

    def __init__(self, mesh: Mesh, loop: asyncio.AbstractEventLoop, pool: object) -> None:
        self.mesh = mesh
        self.loop = loop
        self.pool = pool


# Oldest first. Appended and removed whole (atomic under the GIL): threads that open pools on
# loops of their own share it.
_open_pools: list[OpenPool] = []


def pool_opened(entry: OpenPool) -> None:
    _open_pools.append(entry)


def pool_closed(mesh: Mesh) -> None:
    for entry in list(_open_pools):
        if entry.mesh is mesh:
            _open_pools.remove(entry)


def latest_pool(loop: asyncio.AbstractEventLoop | None = None) -> OpenPool | None:
    """The most recently opened pool still open (on `loop`, if given)."""
    for entry in reversed(list(_open_pools)):
        if loop is None or entry.loop is loop:
            return entry
    return None


def current_pool() -> OpenPool | None:
    """The pool a call made here would use, if it is a pool (not a worker's own mesh)."""
    mesh = current_mesh_var.get()
    if mesh is None:
        return latest_pool(running_loop()) or latest_pool()
    for entry in list(_open_pools):
        if entry.mesh is mesh:
            return entry
    return None


def current_mesh(routine_name: str) -> Mesh:
    mesh = current_mesh_var.get()
    if mesh is not None:
        return mesh
    loop = asyncio.get_running_loop()
    entry = latest_pool(loop)
    if entry is not None:
        return entry.mesh
    if latest_pool() is not None:
        raise NoPoolError(
            f"routine {routine_name} was called on an event loop on which no worker pool is open; the open pool runs "
            f"on another loop (a pool opened with `with`, on a thread of its own): call it as `pool.run({routine_name}(...))`"
        )
    raise NoPoolError(
        f"routine {routine_name} was called outside any worker pool: call it inside `async with wool.WorkerPool(...):` "
        f"(or, from synchronous code, `with wool.WorkerPool(...) as pool:` and `pool.run({routine_name}(...))`)"
    )


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
