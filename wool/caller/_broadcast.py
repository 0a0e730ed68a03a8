"""`pool.broadcast(routine, ...)`: run a routine once on every worker in the rotation.

The targets are the workers in rotation when the broadcast starts that have the routine's
tags and those of the enclosing `wool.options` (workers that join meanwhile are not
included). Each call is pinned to its worker (see `_route`): if that worker leaves before the
call is sent, or is lost while it runs, its entry is a `WorkerLost`; the call never moves to
another worker, so each worker runs it at most once. The calls share one deadline (from
`wool.options(timeout=...)`): when it passes, or the broadcast is cancelled, every call
still running is cancelled and waited for, and the broadcast raises `TimeoutError` (or
`CancelledError`), since a partial answer would look complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from .._errors import NoWorkersAvailable, WorkerLost
from ._context import current_mesh_var
from ._mesh import Mesh
from ._options import deadline, options_var
from ._retry import cancel_all
from ._route import Pinned, route_var
from ._routine import RoutineSpec


def _spec(routine: Callable[..., Any]) -> RoutineSpec:
    spec = getattr(routine, "__wool_routine__", None)
    if not isinstance(spec, RoutineSpec):
        raise TypeError(f"broadcast needs a @wool.routine, not {routine!r}")
    if spec.generator:
        raise TypeError(f"broadcast needs a coroutine routine; {routine.__qualname__} is an async generator")
    return spec


async def broadcast(mesh: Mesh, routine: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    spec = _spec(routine)
    options = options_var.get()
    tags = spec.tags | options.tags
    targets = [w.id for w in mesh.workers if tags <= w.tags]
    if not targets and mesh.expecting:  # its pool is replacing workers: wait for one
        with contextlib.suppress(TimeoutError):
            await mesh.wait_until(lambda ws: any(tags <= w.tags for w in ws), mesh.connect_timeout)
        targets = [w.id for w in mesh.workers if tags <= w.tags]
    if not targets:
        wanted = f" with the tags {', '.join(sorted(tags))}" if tags else ""
        raise NoWorkersAvailable(f"broadcast of {routine.__qualname__}: no live worker{wanted} in the pool")
    loop = asyncio.get_running_loop()
    when = deadline(loop, options.timeout)

    async def on(worker_id: str) -> Any:
        current_mesh_var.set(mesh)
        route_var.set(Pinned(worker_id))
        try:
            return await routine(*args, **kwargs)
        except NoWorkersAvailable:
            raise WorkerLost(f"worker {worker_id} left the rotation before the call was sent; it did not run") from None

    calls = {worker_id: asyncio.ensure_future(on(worker_id)) for worker_id in targets}
    try:
        async with asyncio.timeout_at(when):
            await asyncio.wait(calls.values())
        if when is not None and loop.time() >= when and any(isinstance(_outcome(c), TimeoutError) for c in calls.values()):
            raise TimeoutError(f"broadcast of {routine.__qualname__} did not finish before its deadline")
    finally:
        await cancel_all(calls.values())
    return {worker_id: _outcome(call) for worker_id, call in calls.items()}


def _outcome(call: asyncio.Future[Any]) -> Any:
    if call.cancelled():
        return asyncio.CancelledError()
    return call.exception() or call.result()
