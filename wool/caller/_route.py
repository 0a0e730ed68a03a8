"""Which worker one call goes to, when it is not simply the load balancer's choice.

- An affinity key (`wool.options(affinity=...)`) picks the key's worker by rendezvous
  hashing among the live workers with the call's tags (see `_affinity`).
- `pool.broadcast` pins each of its calls to one worker; a worker that left the rotation
  meanwhile fails that call with `WorkerLost` instead of sending it elsewhere.
- A hedged copy, or a retry, avoids the workers already tried (`Tried`; see `_retry`).

The last two are set for one call by the code making it (`route_var`), around that call
only: a context variable that does not travel with the call, so nested calls on workers
never see it. A call with none of these goes straight to `Mesh.choose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

from .._errors import NoWorkersAvailable, WorkerLost
from ._affinity import Affinity
from ._loadbalancer import Candidate, LoadBalancer

if TYPE_CHECKING:
    from ._connection import Connection
    from ._mesh import Mesh

C = TypeVar("C", bound=Candidate)


class Pinned:
    """Only the worker `worker_id`."""

    __slots__ = ("worker_id",)

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id

    def choose(self, candidates: Sequence[C]) -> C:
        for candidate in candidates:
            if candidate.worker.id == self.worker_id:
                return candidate
        raise WorkerLost(f"worker {self.worker_id} left the rotation before the call was sent; it did not run")


class Tried:
    """The workers an idempotent call's attempts went to (shared by its hedged copies and
    its retries, which prefer the others). A hedged copy (`elsewhere()`) never goes to a
    worker already tried: with no other, it raises `NoWorkersAvailable`."""

    __slots__ = ("ids", "strict")

    def __init__(self, ids: set[str] | None = None, strict: bool = False) -> None:
        self.ids: set[str] = set() if ids is None else ids
        self.strict = strict

    def elsewhere(self) -> Tried:
        return Tried(self.ids, strict=True)

    def balancer(self, then: LoadBalancer) -> LoadBalancer:
        return _Avoiding(self, then)


class _Avoiding:
    __slots__ = ("tried", "then")

    def __init__(self, tried: Tried, then: LoadBalancer) -> None:
        self.tried, self.then = tried, then

    def choose(self, candidates: Sequence[C]) -> C:
        ids = self.tried.ids
        others = [c for c in candidates if c.worker.id not in ids]
        if not others:
            if self.tried.strict:
                raise NoWorkersAvailable(f"no live worker other than {', '.join(sorted(ids))} to send a hedged copy to")
            others = list(candidates)
        chosen = self.then.choose(others)
        ids.add(chosen.worker.id)
        return chosen


route_var: ContextVar[Pinned | Tried | None] = ContextVar("wool_route", default=None)


async def choose(mesh: Mesh, bounded: bool, tags: frozenset[str], affinity: bytes | None) -> Connection:
    """The connection a call with these `tags` and `affinity` digest is sent on."""
    route = route_var.get()
    if route is None:
        if affinity is None:
            return await mesh.choose(bounded, tags)
        # The key's worker even when this process's window on it is full: the call then
        # waits on the worker (its `max_calls`), so that a key never moves because of load.
        return await mesh.choose(False, tags, Affinity(affinity))
    if isinstance(route, Pinned):
        return await mesh.choose(False, tags, route)
    then: LoadBalancer = Affinity(affinity) if affinity is not None else mesh.balancer
    return await mesh.choose(bounded and affinity is None, tags, route.balancer(then))
