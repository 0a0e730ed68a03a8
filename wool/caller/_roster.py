"""The workers a mesh knows, and its connections to them, kept in step with discovery.

Theory of operation. A `Roster` knows every worker it may dispatch to (what discovery lists,
and the workers its pool spawned) as a `Slot`, and holds a `Connection` only to the workers
it talks to: the first call that chooses a worker opens its connection, and a connection that
carried no call for `idle_timeout` seconds is closed (a sweep every half of that, so it closes
after one to one and a half times it). Heartbeats and monitor sockets exist only on open
connections, so an idle process holds no socket to its peers and spends nothing on them,
whatever the size of its namespace; a busy one holds sockets to the peers it talks to.

The rotation (`workers`, and what `Mesh.pick` chooses among) is every known worker not known
to be unusable: a worker discovery lists is in it on discovery's word, before any connection;
one that is lost, refuses connections, refused this process's key, or failed its handshake is
out. Every change of the rotation is announced (`_changed`) and wakes the calls waiting for
room, to look again.

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
warning per worker (`_explain.why_ignored`). A worker whose handshake fails (it refused this
process's key) is not tried again: its allow-list is fixed for its lifetime, and a restarted
worker is a new entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from .._errors import AuthenticationError, WoolError
from .._info import Discovery, WorkerInfo
from .._keys import Keys
from .._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE
from ._connection import Connection
from ._explain import why_ignored
from ._idle import DEFAULT_IDLE_TIMEOUT, IdleSweep, check_idle_timeout
from ._loadbalancer import LoadBalancer, RoundRobin
from ._slots import RoomLine, Slot

log = logging.getLogger("wool.mesh")

WATCH_RETRY_DELAY = 1.0
# How long a call waits for a worker that can run it to connect, or to appear in discovery.
DEFAULT_CONNECT_TIMEOUT = 10.0


class Roster:
    """The workers of one discovery namespace (or a fixed set), connected on demand; `Mesh`
    adds choosing one for each call."""

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
        insecure: bool = False,
    ) -> None:
        self.discovery = discovery
        # Keyless, opted in to endpoints other users may hold: ipc:// paths are not checked.
        self.insecure = insecure
        # Whether workers may join `discovery` later: not a pool's private namespace.
        self.open_namespace = open_namespace
        self.expecting = 0  # workers being started for this mesh (a pool's replacements)
        self.replacing = False  # its pool replaces every worker that recycles or dies
        self.max_message_size = max_message_size
        self.keys = keys
        self.balancer: LoadBalancer = balancer or RoundRobin()
        self.connect_timeout = connect_timeout
        self.liveness = liveness
        self.idle_timeout = check_idle_timeout(idle_timeout)
        self.handshake_timeout = min(connect_timeout, max(1.0, 0.75 * liveness))
        self._slots: dict[str, Slot] = {}  # every worker known, in the order it became known
        self._rotation: list[Slot] = []  # the usable ones (see `_usable`), rebuilt on changes
        # Open connections, by worker id; a retired worker's stays until its calls end.
        self._connections: dict[str, Connection] = {}
        self._lost: set[str] = set()
        self._listed: dict[str, WorkerInfo] = {}  # what discovery currently shows
        self._ignored: dict[str, str] = {}  # worker id -> why it is not used (keys)
        self._refused: dict[str, str] = {}  # worker id -> why its handshake (or connect) failed
        self._room = RoomLine()  # calls waiting for room in a window
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
            slot = self._slots[worker.id] = Slot(worker)
            self._rotation_changed()
        if connect and slot.conn is None:
            self._connect(slot)

    def _ignore(self, worker: WorkerInfo) -> bool:
        """Whether `worker` is not to be connected to, given this mesh's keys; warns once
        per worker."""
        reason = why_ignored(self.keys, worker)
        if reason is None:
            return False
        if worker.id not in self._ignored:
            log.warning("%s", reason)
            self._ignored[worker.id] = reason
        return True

    def _connect(self, slot: Slot) -> Connection | None:
        """Open `slot`'s connection (its handshake completes later)."""
        worker = slot.worker
        try:
            conn = Connection(
                worker,
                self._on_connected,
                self._on_lost,
                self._room.on_room,
                liveness=self.liveness,
                on_refused=self._on_refused,
                keys=self.keys,
                max_message_size=self.max_message_size,
                insecure=self.insecure,
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

    def expect(self, delta: int) -> None:
        """A worker is being started for this mesh (+1), or has been added or failed (-1):
        meanwhile a call finding no worker waits for it (see `Mesh.choose`)."""
        self.expecting += delta
        self._announce()

    def lose(self, worker_id: str, reason: str) -> None:
        """Declare `worker_id` lost for `reason` (its pool is killing it): the calls in
        flight on it fail with `WorkerLost(reason)` now, before the process goes."""
        conn = self._connections.get(worker_id)
        if conn is not None:
            conn.fail(reason)
        else:
            self.retire(worker_id)

    def _close(self, conn: Connection) -> None:
        if self._connections.get(conn.worker.id) is conn:
            del self._connections[conn.worker.id]
        slot = self._slots.get(conn.worker.id)
        if slot is not None and slot.conn is conn:
            slot.conn = None
        self._idle.forget(conn)
        conn.close()

    def _usable(self, slot: Slot) -> bool:
        """Whether `slot` is in rotation."""
        if slot.worker.id in self._lost or slot.worker.id in self._refused:
            return False
        conn = slot.conn
        if conn is None:
            return not slot.probation
        if conn.lost is not None or conn.draining:
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
        self._room.wake_all()

    async def wait_connected(self, workers: Iterable[WorkerInfo], timeout: float) -> None:
        """Wait until each of `workers` has connected or is known lost."""
        futures = [c.connected for w in workers if (c := self._connections.get(w.id)) is not None]
        if futures:
            await asyncio.wait(futures, timeout=timeout)

    def start_watching(self) -> None:
        if self.discovery is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self.discovery))

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
                slot = self._slots[worker_id] = Slot(info)
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
