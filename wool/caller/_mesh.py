"""The workers this process can dispatch to, kept in step with discovery.

Both a caller's `WorkerPool` and every worker use a `Mesh`: that is what makes the mesh flat
(a routine on a worker dispatches nested routines exactly as the caller does).

Theory of operation. A `Mesh` knows every worker it may dispatch to (what discovery lists,
and the workers its pool spawned) as a `_Slot`, and holds a `Connection` only to the workers
it talks to: the first call that chooses a worker opens its connection and waits for the
handshake (paid once; about a millisecond on loopback), and a connection that carried no
call for `idle_timeout` seconds is closed (a sweep every half of that, so it closes after one
to one and a half times it). Heartbeats and monitor sockets exist only on open connections,
so an idle process holds no socket to its peers and spends nothing on them, whatever the size
of its namespace; a busy one holds sockets to the peers it talks to.

The rotation (`workers`, and what the load balancer chooses among) is every known worker not
known to be unusable: a worker discovery lists is in it on discovery's word, before any
connection; one that is lost, refuses connections, refused this process's key, or failed its
handshake is out. Choosing is synchronous (the load balancer decides); a call then awaits
only the handshake of a worker not yet connected (bounded: a worker that does not complete it
within ¾ of the liveness bound, at least 1 s, is treated as lost, and the call, which has sent
nothing, chooses again), room in a window that is full, or, with nobody in rotation, a
worker still connecting. Calls waiting for room queue in order, and each call that ends wakes
one of them.

Discovery is a hint for removal too: a worker that leaves it stays in rotation while its
connection is up (see `_unlisted`), and is dropped when that connection fails or closes for
idleness; one that is not connected is dropped at once (nothing vouches for it). A lost
worker stays out of rotation while discovery still lists it; after one liveness period it is
probed again: a connection is opened in the background and the worker rejoins the rotation
once that handshake completes (a worker that was frozen, then resumed, comes back; one that is
really gone never completes it, so it is never chosen). A loss or a refused connection also
asks discovery for its current workers, which for a registry prunes the entries of dead
processes, so that every watcher sees them leave.

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

from .._errors import AuthenticationError, NoWorkersAvailable, WoolError
from .._info import Discovery, WorkerInfo
from .._keys import Keys
from .._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE
from ._connection import Connection
from ._idle import DEFAULT_IDLE_TIMEOUT, IdleSweep, check_idle_timeout
from ._loadbalancer import LoadBalancer, RoundRobin

log = logging.getLogger("wool.mesh")

WATCH_RETRY_DELAY = 1.0
# How long a call waits for a worker that can run it to connect, or to appear in discovery.
DEFAULT_CONNECT_TIMEOUT = 10.0


class _Slot:
    """A worker this mesh may dispatch to, with its connection while one is open: what a
    load balancer sees (a `Candidate`)."""

    __slots__ = ("worker", "conn", "probation", "deadline")

    def __init__(self, worker: WorkerInfo) -> None:
        self.worker = worker
        self.conn: Connection | None = None
        # Lost once and being probed again: in rotation only once that handshake completes.
        self.probation = False
        self.deadline = 0.0  # loop time by which the open connection's handshake must complete

    def __repr__(self) -> str:
        return f"<worker {self.worker.id[:8]} {self.conn!r}>"

    @property
    def in_flight(self) -> int:
        """Calls of this process open on the worker."""
        return self.conn.in_flight if self.conn is not None else 0

    @property
    def has_room(self) -> bool:
        return self.conn is None or self.conn.has_room


class Mesh:
    """The workers of one discovery namespace (or a fixed set), connected on demand."""

    def __init__(
        self,
        discovery: Discovery | None = None,
        balancer: LoadBalancer | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        liveness: float = DEFAULT_LIVENESS,
        keys: Keys | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
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
        self.idle_timeout = check_idle_timeout(idle_timeout)
        self.handshake_timeout = min(connect_timeout, max(1.0, 0.75 * liveness))
        self._slots: dict[str, _Slot] = {}  # every worker known, in the order it became known
        self._rotation: list[_Slot] = []  # the usable ones (see `_usable`), rebuilt on changes
        # Open connections, by worker id; a retired worker's stays until its calls end.
        self._connections: dict[str, Connection] = {}
        self._lost: set[str] = set()
        self._listed: dict[str, WorkerInfo] = {}  # what discovery currently shows
        self._ignored: dict[str, str] = {}  # worker id -> why it is not used (keys)
        self._refused: dict[str, str] = {}  # worker id -> why its handshake (or connect) failed
        # Calls waiting for room in a window, in order, with the tags their worker needs.
        self._room: deque[tuple[frozenset[str], asyncio.Future[Connection | None]]] = deque()
        self._watcher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set, and replaced, whenever the rotation changes
        # Closing idle connections: a timer, armed only while some are open (see `_idle`).
        self._sweeper: asyncio.TimerHandle | None = None
        self._idle = IdleSweep()
        self._pruning: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def workers(self) -> list[WorkerInfo]:
        """The workers currently in rotation."""
        return [s.worker for s in self._rotation]

    @property
    def connections(self) -> list[Connection]:
        """The connections open now (for observing what this process holds)."""
        return list(self._connections.values())

    def add(self, worker: WorkerInfo, *, connect: bool = False) -> None:
        """Know `worker` (idempotent); with `connect`, open its connection now rather than on
        the first call (a pool does so for the workers it spawned)."""
        if self.closed or worker.id in self._lost or worker.id in self._refused:
            return
        slot = self._slots.get(worker.id)
        if slot is None:
            if self._ignore(worker):
                return
            slot = self._slots[worker.id] = _Slot(worker)
            self._rotation_changed()
        if connect and slot.conn is None:
            self._connect(slot)

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

    def _connect(self, slot: _Slot) -> Connection | None:
        """Open `slot`'s connection (its handshake completes later)."""
        worker = slot.worker
        try:
            conn = Connection(
                worker,
                self._on_connected,
                self._on_lost,
                self._on_room,
                liveness=self.liveness,
                on_refused=self._on_refused,
                keys=self.keys,
                max_message_size=self.max_message_size,
            )
        except WoolError as e:
            log.warning("skipping worker: %s", e)
            self._refused[worker.id] = str(e)
            self._rotation_changed()
            return None
        slot.conn = self._connections[worker.id] = conn
        slot.deadline = asyncio.get_running_loop().time() + self.handshake_timeout
        self._arm_sweeper()
        return conn

    def retire(self, worker_id: str) -> None:
        """Stop choosing a worker that left discovery. Its connection is closed now if no
        call is in flight on it. Otherwise those calls may still finish (a worker withdraws
        before it stops), and the connection stays open, out of rotation, until they have
        and the idle sweep closes it (see `_idle`), or its worker goes away (calls still in
        flight then fail with `WorkerLost`), or the mesh closes."""
        slot = self._slots.pop(worker_id, None)
        if slot is not None:
            self._rotation_changed()
        conn = self._connections.get(worker_id)
        if conn is not None and conn.idle:
            self._close(conn)

    def _close(self, conn: Connection) -> None:
        if self._connections.get(conn.worker.id) is conn:
            del self._connections[conn.worker.id]
        slot = self._slots.get(conn.worker.id)
        if slot is not None and slot.conn is conn:
            slot.conn = None
        self._idle.forget(conn)
        conn.close()

    def _usable(self, slot: _Slot) -> bool:
        """Whether `slot` is in rotation."""
        if slot.worker.id in self._lost or slot.worker.id in self._refused:
            return False
        conn = slot.conn
        if conn is None:
            return not slot.probation
        if conn.lost is not None:
            return False
        if conn.connected.done():
            return True
        return not conn.refused and not slot.probation  # connecting, on discovery's word

    def _unlisted(self, worker_id: str) -> None:
        """Discovery no longer lists `worker_id`. A hint, for removal as for addition: a
        Zeroconf goodbye can be spoofed and a registry clobbered, so a worker whose
        authenticated connection is up stays in rotation until that connection fails
        (`_on_lost`) or the worker refuses a call (a stopping worker rejects calls as
        SHUTTING_DOWN, and the caller retires it and sends the call elsewhere). One that is
        not connected is dropped: nothing vouches for it (nor, later, for one whose connection
        closes for idleness: see `_sweep`)."""
        conn = self._connections.get(worker_id)
        if conn is not None and conn.connected.done() and conn.lost is None:
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
        self._rotation = [s for s in self._slots.values() if self._usable(s)]
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
        """A live worker's connection, chosen by the load balancer (or `balancer`) among the
        workers in rotation that have every one of `tags` and room in their window (any, if
        not `bounded`), connecting to it first if need be. If all are full, wait for room; if
        none is in rotation, wait up to `connect_timeout` for one to connect, or, following
        discovery, for one to appear (a pool started together with its workers). Then raise
        `NoWorkersAvailable`."""
        balancer = balancer or self.balancer
        if self._rotation and not tags:  # the common case, without building lists
            slot = balancer.choose(self._rotation)
            if slot.has_room or not bounded:
                conn = slot.conn
                if conn is not None and conn.lost is None and conn.connected.done():
                    return conn
                if (conn := await self._handshake(slot, bounded)) is not None:
                    return conn
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        waiting = False  # for a worker to appear (logged once)
        while True:
            if self.closed:
                raise NoWorkersAvailable("the pool is closed")
            candidates = [s for s in self._rotation if tags <= s.worker.tags] if tags else self._rotation
            if candidates:
                roomy = [s for s in candidates if s.has_room] if bounded else candidates
                if roomy:
                    if (conn := await self._handshake(balancer.choose(roomy), bounded)) is not None:
                        return conn
                    continue  # it failed (and left the rotation) or filled up meanwhile: choose again
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

    async def _handshake(self, slot: _Slot, bounded: bool) -> Connection | None:
        """`slot`'s connection once usable, opened and waited for if need be; None if it
        failed (refused, lost, closed, or no handshake within `handshake_timeout`: then the
        worker is treated as lost), or if `bounded` and the calls that waited with this one
        filled its window. Nothing has been sent on it, so the caller may choose again."""
        conn = slot.conn if slot.conn is not None else self._connect(slot)
        loop = asyncio.get_running_loop()
        while conn is not None and not conn.connected.done() and not conn.refused:
            remaining = slot.deadline - loop.time()
            if remaining <= 0:
                conn.fail(
                    f"worker {conn.worker.id} (pid {conn.worker.pid}) at {conn.worker.endpoint} "
                    f"did not complete its handshake within {self.handshake_timeout:g} s"
                )
                return None
            # Woken by its handshake, or by any change of the rotation (a refusal included).
            changed = asyncio.ensure_future(self._changed.wait())
            both: list[asyncio.Future[Any]] = [conn.connected, changed]
            try:
                await asyncio.wait(both, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
        if conn is None or conn.lost is not None or not conn.connected.done() or slot.conn is not conn:
            return None
        return conn if conn.has_room or not bounded else None

    def _describe_empty(self, tags: frozenset[str] = frozenset()) -> str:
        where = f" in {self.discovery!r}" if self.discovery is not None else ""
        if tags and self._rotation:
            seen = sorted({", ".join(repr(t) for t in sorted(s.worker.tags)) or "no tags" for s in self._rotation})
            return (
                f"no live worker has the tags {', '.join(sorted(tags))}{where}: "
                f"{len(self._rotation)} live workers have {'; '.join(seen)}"
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
        for task in (self._watcher, self._pruning):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()
        self._idle.clear()
        self._slots.clear()
        self._rotation_changed()

    # -- idle connections ------------------------------------------------------------------

    def _arm_sweeper(self) -> None:
        if self._sweeper is None and self.idle_timeout is not None and self._connections and not self.closed:
            self._sweeper = asyncio.get_running_loop().call_later(self.idle_timeout / 2, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for `idle_timeout` (see `_idle`); runs only while some
        are open."""
        self._sweeper = None
        for conn in self._idle.sweep(list(self._connections.values())):
            log.debug("closing the idle connection to worker %r", conn.worker.id)
            self._close(conn)
            if self.discovery is not None and conn.worker.id not in self._listed:
                self.retire(conn.worker.id)  # unlisted, kept only while connected (`_unlisted`)
        self._arm_sweeper()

    # -- connection events -----------------------------------------------------------------

    def _on_connected(self, conn: Connection) -> None:
        if conn.lost is None and self._connections.get(conn.worker.id) is conn:
            slot = self._slots.get(conn.worker.id)
            if slot is not None:
                slot.probation = False
            self._rotation_changed()
            log.debug("worker %r connected at %r", conn.worker.id, conn.worker.endpoint)

    def _on_refused(self, conn: Connection) -> None:
        self._rotation_changed()
        self._prune_listing()

    def _on_lost(self, conn: Connection) -> None:
        refused = isinstance(conn.lost, AuthenticationError)
        if refused:
            self._refused[conn.worker.id] = str(conn.lost)
            log.warning("%s", conn.lost)
        else:
            self._lost.add(conn.worker.id)
        self._close(conn)
        self._rotation_changed()
        if self.discovery is not None and not self.closed and not refused:
            asyncio.get_running_loop().call_later(self.liveness, self._revisit, conn.worker.id)
            self._prune_listing()

    def _revisit(self, worker_id: str) -> None:
        """Probe a lost worker that discovery still lists: back in rotation once it connects."""
        info = self._listed.get(worker_id)
        if info is not None and worker_id in self._lost and not self.closed:
            log.debug("trying lost worker %r again: discovery still lists it", worker_id)
            self._lost.discard(worker_id)
            slot = self._slots.get(worker_id)
            if slot is None:
                if self._ignore(info):
                    return
                slot = self._slots[worker_id] = _Slot(info)
            slot.probation = True
            if slot.conn is None:
                self._connect(slot)
            self._rotation_changed()

    def _prune_listing(self) -> None:
        """Ask discovery for its workers once (not while a request runs): a registry prunes
        the entries of dead processes as it answers, and every watcher sees them leave."""
        if self.discovery is None or self.closed or (self._pruning is not None and not self._pruning.done()):
            return
        self._pruning = asyncio.get_running_loop().create_task(self._ask_discovery(self.discovery))

    @staticmethod
    async def _ask_discovery(discovery: Discovery) -> None:
        try:
            await discovery.workers()
        except Exception as e:  # DiscoveryError or a user backend's: the watch still works
            log.debug("could not refresh %r: %s", discovery, e)

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
