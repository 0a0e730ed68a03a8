"""Which mesh a routine call dispatches through: the innermost open `WorkerPool`, or, inside a
worker, that worker's own mesh of peers."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from ._errors import NoPoolError

if TYPE_CHECKING:
    from ._mesh import Mesh

current_mesh_var: ContextVar[Mesh | None] = ContextVar("wool_current_mesh", default=None)


def current_mesh(routine_name: str) -> Mesh:
    mesh = current_mesh_var.get()
    if mesh is None:
        raise NoPoolError(
            f"routine {routine_name} was called outside any worker pool: "
            "call it inside `async with wool.WorkerPool(...):`"
        )
    return mesh
