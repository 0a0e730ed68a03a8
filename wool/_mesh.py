"""The workers this process can dispatch to, kept in step with discovery.

Both a caller's `WorkerPool` and every worker use a `Mesh`: that is what makes the mesh flat
(a routine on a worker dispatches nested routines exactly as the caller does). A `Mesh` holds
one `Connection` per worker incarnation; a connection joins the rotation once its handshake
completes and leaves it when its worker is lost or withdrawn. Choosing is synchronous (the
load balancer decides); only waiting for a first worker to connect, or for room on a worker
whose window of open calls is full, awaits. Calls waiting for room queue in order, and each
call that ends wakes one of them.

Discovery is a hint for removal too: a worker that leaves it stays in rotation while its
connection is up (see `_unlisted`). A lost worker stays out of rotation while discovery still
lists it; after one liveness period it is tried again (a worker that was frozen, then resumed, comes back; one that is
really gone never completes the handshake, so it is never chosen).

Security: discovery is an untrusted hint. A mesh with keys connects only to workers that
publish a public key it trusts (and the CURVE handshake proves they hold its secret key); a
mesh without keys connects only to workers without one. Other entries are ignored, with one
warning per worker. A worker whose handshake fails (it refused this process's key) is not
tried again: its allow-list is fixed for its lifetime, and a restarted worker is a new entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ._connection import Connection
from ._errors import AuthenticationError, NoWorkersAvailable, WoolError
from ._keys import Keys
from ._loadbalancer import LoadBalancer, RoundRobin
from ._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE
from .discovery import Discovery, WorkerInfo

log = logging.getLogger("wool.mesh")

WATCH_RETRY_DELAY = 1.0
# How long a call waits for a worker that can run it to connect, or to appear in discovery.
DEFAULT_CONNECT_TIMEOUT = 10.0


class Mesh:
    """Connections to the workers of one discovery namespace (or a fixed set)."""

    def __init__(
        self,
        discovery: Discovery | None = None,
        balancer: LoadBalancer | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        liveness: float = DEFAULT_LIVENESS,
        keys: Keys | None = None,
        open_namespace: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.discovery = discovery
        # Whether workers may join `discovery` later: not a pool's private namespace.
        self.open_namespace = open_namespace
        self.max_message_size = max_message_size
        self.keys = keys
        self.balancer: LoadBalancer = balancer or RoundRobin()
        self.connect_timeout = connect_timeout
        self.liveness = liveness
        self._connections: dict[str, Connection] = {}
        self._ready: list[Connection] = []
        self._lost: set[str] = set()
        self._listed: dict[str, WorkerInfo] = {}  # what discovery currently shows
        self._ignored: dict[str, str] = {}  # worker id -> why it is not used (keys)
        self._refused: dict[str, str] = {}  # worker id -> why its handshake failed
        # Calls waiting for room in a window, in order, with the tags their worker needs.
        self._room: deque[tuple[frozenset[str], asyncio.Future[Connection | None]]] = deque()
        self._watcher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set, and replaced, whenever the rotation changes
        self.closed = False

    @property
    def workers(self) -> list[WorkerInfo]:
        """The workers currently in rotation."""
        return [c.worker for c in self._ready]

    def add(self, worker: WorkerInfo) -> Connection | None:
        """Connect to `worker` unless already connected or known lost. Idempotent."""
        if self.closed or worker.id in self._lost or worker.id in self._refused:
            return None
        conn = self._connections.get(worker.id)
        if conn is not None:
            return conn
        if self._ignore(worker):
            return None
        try:
            conn = Connection(
                worker,
                self._on_connected,
                self._on_lost,
                self._on_room,
                liveness=self.liveness,
                on_refused=lambda _: self._rotation_changed(),
                keys=self.keys,
                max_message_size=self.max_message_size,
            )
        except WoolError as e:
            log.warning("skipping worker: %s", e)
            return None
        self._connections[worker.id] = conn
        self._announce()  # a call waiting for a worker to appear waits for this one now
        return conn

    def _ignore(self, worker: WorkerInfo) -> bool:
        """Whether `worker` is not to be connected to, given this mesh's keys; warns once
        per worker."""
        where = f"worker {worker.id!r} at {worker.endpoint!r}"
        if self.keys is None:
            if worker.public_key is None:
                return False
            reason = f"{where} requires CURVE keys and this process has none; ignoring it (open the pool with keys= to use it)"
        elif worker.public_key is None:
            reason = f"{where} has no CURVE key and this process only uses workers with keys; ignoring it"
        elif self.keys.trusts(worker.public_key):
            return False
        else:
            reason = (
                f"{where} publishes the public key {worker.public_key!r}, which this process does not trust; "
                "ignoring it (discovery is only a hint: trust its key to use it)"
            )
        if worker.id not in self._ignored:
            log.warning("%s", reason)
            self._ignored[worker.id] = reason
        return True

    def retire(self, worker_id: str) -> None:
        """Stop choosing a worker that left discovery. Its connection is closed now if no
        call is in flight on it. Otherwise those calls may still finish (a worker withdraws
        before it stops), and the connection stays open, out of rotation, also once they
        have: nothing closes it when it becomes idle. It ends when its worker goes away
        (calls still in flight then fail with `WorkerLost`) or the mesh closes."""
        conn = self._connections.get(worker_id)
        if conn is None:
            return
        self._leave_rotation(conn)
        if conn.in_flight == 0:
            del self._connections[worker_id]
            conn.close()

    def _unlisted(self, worker_id: str) -> None:
        """Discovery no longer lists `worker_id`. A hint, for removal as for addition: a
        Zeroconf goodbye can be spoofed and a registry clobbered, so a worker whose
        authenticated connection is up stays in rotation until that connection fails
        (`_on_lost`) or the worker refuses a call (a stopping worker rejects calls as
        SHUTTING_DOWN, and the caller retires it and sends the call elsewhere). One that is
        not connected is dropped: nothing vouches for it."""
        conn = self._connections.get(worker_id)
        if conn is not None and conn in self._ready and conn.lost is None:
            log.debug("worker %r left discovery; keeping it while its connection is up", worker_id)
            return
        self.retire(worker_id)

    async def wait_until(self, predicate: Callable[[list[WorkerInfo]], bool], timeout: float | None) -> list[WorkerInfo]:
        """Wait until the workers in rotation satisfy `predicate`; raise `TimeoutError`."""
        async with asyncio.timeout(timeout):
            while not predicate(workers := self.workers):
                await self._changed.wait()
        return workers

    def _announce(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _rotation_changed(self) -> None:
        self._announce()
        while self._room:  # every waiter looks again
            _, waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _on_room(self, conn: Connection | None = None) -> None:
        """One call ended on `conn`: the first waiter that may use that worker may go."""
        room = self._room
        while room and room[0][1].done():
            room.popleft()
        for i, (tags, waiter) in enumerate(room):  # the head, unless tags rule it out
            if not waiter.done() and (conn is None or tags <= conn.worker.tags):
                del room[i]
                waiter.set_result(conn)
                return

    async def _wait_for_room(self, tags: frozenset[str]) -> None:
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        self._room.append((tags, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._on_room(waiter.result())  # pass the wake-up on
            raise

    def _leave_rotation(self, conn: Connection) -> None:
        if conn in self._ready:
            self._ready.remove(conn)
            self._rotation_changed()

    async def wait_connected(self, workers: Iterable[WorkerInfo], timeout: float) -> None:
        """Wait until each of `workers` has connected or is known lost."""
        futures = [c.connected for w in workers if (c := self._connections.get(w.id)) is not None]
        if futures:
            await asyncio.wait(futures, timeout=timeout)

    @property
    def _may_appear(self) -> bool:
        """Whether to wait for a suitable worker to appear: discovery is followed, in a
        namespace other processes' workers may join, and no worker in it is unusable for a
        reason a call should hear at once (it refused this process's key, its keys do not
        fit, it refuses connections)."""
        if self._watcher is None or not self.open_namespace or self._refused or self._ignored:
            return False
        return not any(c.refused and not c.connected.done() for c in self._connections.values())

    def start_watching(self) -> None:
        if self.discovery is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self.discovery))

    async def choose(
        self, bounded: bool = True, tags: frozenset[str] = frozenset(), balancer: LoadBalancer | None = None
    ) -> Connection:
        """A live worker's connection, chosen by the load balancer (or `balancer`) among those that have
        every one of `tags` and room in their window (any, if not `bounded`). If all are
        full, wait for room; if none is live yet, wait up to `connect_timeout` for one to
        connect, or, following discovery, for one to appear (a pool started together with
        its workers). Then raise `NoWorkersAvailable`."""
        balancer = balancer or self.balancer
        if self._ready and not tags:
            conn = balancer.choose(self._ready)
            if conn.has_room or not bounded:
                return conn
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        waiting = False  # for a worker to appear (logged once)
        while True:
            if self.closed:
                raise NoWorkersAvailable("the pool is closed")
            ready = [c for c in self._ready if tags <= c.worker.tags] if tags else self._ready
            if ready:
                roomy = [c for c in ready if c.has_room] if bounded else ready
                if roomy:
                    return balancer.choose(roomy)
                await self._wait_for_room(tags)
                continue
            connecting = [
                c.connected
                for c in self._connections.values()
                if not c.connected.done() and not c.refused and tags <= c.worker.tags
            ]
            remaining = deadline - loop.time()
            if remaining <= 0 or not (connecting or self._may_appear):
                waited = f" (waited {self.connect_timeout:g} s)" if remaining <= 0 else ""
                raise NoWorkersAvailable(self._describe_empty(tags) + waited)
            if not connecting and not waiting:
                waiting = True
                log.info(
                    "no worker%s in %r yet: a call waits up to %g s for one to appear",
                    f" with the tags {', '.join(sorted(tags))}" if tags else "",
                    self.discovery,
                    remaining,
                )
            # Set when one connects, refuses, fails, or discovery brings a new one.
            changed = asyncio.ensure_future(self._changed.wait())
            waiters: list[asyncio.Future[Any]] = [*connecting, changed]
            try:
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()

    def _describe_empty(self, tags: frozenset[str] = frozenset()) -> str:
        where = f" in {self.discovery!r}" if self.discovery is not None else ""
        if tags and self._ready:
            seen = sorted({", ".join(repr(t) for t in sorted(c.worker.tags)) or "no tags" for c in self._ready})
            return (
                f"no live worker has the tags {', '.join(sorted(tags))}{where}: "
                f"{len(self._ready)} live workers have {'; '.join(seen)}"
            )
        if tags:
            where = f" with the tags {', '.join(sorted(tags))}{where}"
        lost = f" ({len(self._lost)} lost)" if self._lost else ""
        refused = [
            f"{c.worker.id!r} at {c.worker.endpoint!r}"
            for c in self._connections.values()
            if c.refused and not c.connected.done()
        ]
        refusing = f"; refusing connections: {', '.join(refused)}" if refused else ""
        failed = f"; {'; '.join(self._refused.values())}" if self._refused else ""
        ignored = f"; {len(self._ignored)} ignored for their keys ({next(iter(self._ignored.values()))})" if self._ignored else ""
        return f"no live workers{where}{lost}{refusing}{failed}{ignored}"

    async def close(self) -> None:
        """Stop following discovery and close every connection, cancelling their calls."""
        self.closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()
        self._ready.clear()
        self._rotation_changed()

    def _on_connected(self, conn: Connection) -> None:
        if conn.lost is None and self._connections.get(conn.worker.id) is conn:
            self._ready.append(conn)
            self._rotation_changed()
            log.debug("worker %r connected at %r", conn.worker.id, conn.worker.endpoint)

    def _on_lost(self, conn: Connection) -> None:
        refused = isinstance(conn.lost, AuthenticationError)
        if refused:
            self._refused[conn.worker.id] = str(conn.lost)
            log.warning("%s", conn.lost)
        else:
            self._lost.add(conn.worker.id)
        if self._connections.get(conn.worker.id) is conn:
            del self._connections[conn.worker.id]
        self._leave_rotation(conn)
        if refused:
            self._rotation_changed()  # a call waiting for it to connect looks again
        conn.close()
        if self.discovery is not None and not self.closed and not refused:
            asyncio.get_running_loop().call_later(self.liveness, self._revisit, conn.worker.id)

    def _revisit(self, worker_id: str) -> None:
        info = self._listed.get(worker_id)
        if info is not None and worker_id in self._lost and not self.closed:
            log.debug("trying lost worker %r again: discovery still lists it", worker_id)
            self._lost.discard(worker_id)
            self.add(info)

    async def _watch(self, discovery: Discovery) -> None:
        while not self.closed:
            try:
                async for event in discovery.watch():
                    if event.kind == "removed":
                        self._listed.pop(event.worker.id, None)
                        self._unlisted(event.worker.id)
                        self._lost.discard(event.worker.id)
                        self._refused.pop(event.worker.id, None)
                        self._ignored.pop(event.worker.id, None)
                    else:
                        self._listed[event.worker.id] = event.worker
                        self.add(event.worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watching %r failed; retrying", discovery)
            await asyncio.sleep(WATCH_RETRY_DELAY)
