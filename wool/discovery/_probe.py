"""Asking endpoints which worker serves there, without holding a connection to any of them:
the probes behind `StaticDiscovery` and `DnsDiscovery`.

Theory of operation. An endpoint says where a worker listens, not which incarnation listens
there, and every call must name the incarnation. So a probe opens a `Connection` (the kind a
caller uses), waits for its handshake, sends a `ping`, reads the `pong` that names the
worker, and closes the connection again. Between probes a watching process holds nothing
per endpoint: no socket, no heartbeat, no ping (one timer wakes the watch when the next
endpoint is due). Measured on a shared 2-core machine (benchmarks/watch_cost.py), a watch over
64 idle workers went from 267 descriptors and 0.75 % of a core, with a connection held per
endpoint, to 11 descriptors and 0.14 %.

When an endpoint is asked (`Schedule`, pure):
- one where no worker answered (yet) every `poll_interval`: a worker starting there is
  found within about that long;
- one where a worker answered every `recheck_interval` (much longer): a connection costs a
  handshake, and a CURVE handshake is costly, so workers known to be there are asked again
  only to notice a restart or death that nothing else reported;
- every endpoint at once when something suggests a change: a `workers()` call on an equal
  discovery in the same process (the mesh makes one whenever it loses a worker or finds an
  endpoint refusing connections), and, for DNS, every endpoint the name newly lists.

What an answer means (`Probe.ask`): a pong naming another incarnation than before is a
restarted worker (the watch reports "removed" then "added"); an endpoint whose handshake does
not complete within `timeout`, or that refuses connections, is absent; a worker whose
handshake completes but that is slow to answer the ping (its event loop busy) keeps its
place: busy is not dead, and the mesh's own liveness judges the calls it runs.

With keys, an endpoint does not say which public key its worker holds, and a CURVE client
must name it before the first byte. So an endpoint is tried with every key these keys trust
(its own first), `KEYS_AT_ONCE` at a time: a worker holding another key breaks the handshake
off at once, and the key whose handshake completes is the one published for the worker.
Later probes try that key alone, and all of them again once it fails. A worker that refuses
this process's key is left out, with a warning once per endpoint.

What a probe costs is bounded whatever the endpoints' source says (a DNS answer is
untrusted): at most `PROBES_AT_ONCE` probes run at once in a process's event loop, the
others wait their turn, so probing holds at most `PROBES_AT_ONCE * KEYS_AT_ONCE`
connections (three ZeroMQ sockets each; a context has 1,023). A watch asks at most `ROUND`
endpoints (those due the longest) before it reports what they found and comes back for the
rest, so a worker listed among hundreds of dead endpoints is not reported only once every one
of them was asked. Endpoints that refuse connections are warned about in one line per pass
over the due endpoints, naming a few of them.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import weakref
from collections.abc import Iterable, Sequence

from .. import protocol as p
from .._endpoints import parse_endpoint
from .._errors import WoolError
from .._info import WorkerInfo
from .._keys import Keys
from .._throttle import Throttle
from ..caller import Connection

log = logging.getLogger("wool.discovery")
_warnings = Throttle(log)  # of probes that could not even open a socket

RECHECKS = 30  # by default, a worker found is asked again every this many poll intervals
PROBES_AT_ONCE = 16  # probes running at once per event loop; the rest wait for a turn
KEYS_AT_ONCE = 4  # candidate server keys tried at once on one endpoint
ROUND = 4 * PROBES_AT_ONCE  # endpoints a watch asks before it reports what it found
NAMED_IN_WARNING = 3  # endpoints named in a warning about many of them

_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _turn() -> asyncio.Semaphore:
    """The running loop's probe turns (a semaphore is bound to one loop)."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = asyncio.Semaphore(PROBES_AT_ONCE)
    return turns


def _host(endpoint: str) -> str:
    parsed = parse_endpoint(endpoint)
    address = parsed.address
    return str(address) if address is not None else parsed.host


class Probe:
    """One endpoint: the worker last found there, and the key it proved."""

    def __init__(self, endpoint: str, keys: Keys | None = None) -> None:
        self.endpoint = endpoint
        self.keys = keys
        self.worker: WorkerInfo | None = None
        self._key: str | None = None  # the server key whose handshake completed last
        self._denied_warned = False
        self._refused_warned = False
        self.newly_refused = False  # the last `ask` found it refusing connections, not warned yet

    async def ask(self, timeout: float) -> WorkerInfo | None:
        """Connect, ping, close, when the loop's probe turns allow: the worker at the
        endpoint now, or None. Waits at most `timeout` for each handshake (per batch of
        `KEYS_AT_ONCE` keys) and as long again for the pong."""
        async with _turn():
            return await self._ask(timeout)

    async def _ask(self, timeout: float) -> WorkerInfo | None:
        self.newly_refused = False
        candidates = self._candidates()
        conn: Connection | None = None
        conns: list[Connection] = []
        try:
            for start in range(0, len(candidates), KEYS_AT_ONCE):
                refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                conns = self._connect(candidates[start : start + KEYS_AT_ONCE], refused)
                if not conns:
                    break
                conn = await self._handshake(conns, refused, timeout)
                if conn is not None or refused.done() or any(c.denied for c in conns):
                    break
                for c in conns:
                    c.close()
                conns = []
            if conn is None:
                self._key = None  # whoever answers there next may hold another trusted key: try them all
                self.worker = None
                return None
            call_id = conn.new_call_id()
            try:
                pong = conn.request(p.Ping(call_id), False)
                # Not `asyncio.wait_for`, which can swallow a cancellation on Python 3.11.
                await asyncio.wait([pong], timeout=timeout)
                if not pong.done():
                    return self.worker  # connected but busy: busy is not dead
                reply = pong.result()
            except WoolError:
                self.worker = None
                return None
            finally:
                conn.forget(call_id)
        finally:
            for c in conns:
                c.close()
        if not isinstance(reply, p.Pong):
            return self.worker
        self._key = conn.worker.public_key
        self._refused_warned = False
        if self.worker is None or self.worker.id != reply.worker_id:
            self.worker = WorkerInfo(
                reply.worker_id,
                self.endpoint,
                0,
                _host(self.endpoint),
                frozenset(reply.tags),
                p.VERSION,
                reply.max_calls or None,
                conn.worker.public_key,
                reply.max_message_size,
            )
        return self.worker

    def _candidates(self) -> list[str | None]:
        """The server keys to try, in order (None: no keys)."""
        keys = self.keys
        if keys is None:
            return [None]
        if self._key is not None:
            return [self._key]
        return [keys.public, *sorted(keys.trusted - {keys.public})]

    def _connect(self, candidates: Sequence[str | None], refused: asyncio.Future[None]) -> list[Connection]:
        """A connection per candidate server key; none if the endpoint is unusable (or no
        socket could be opened: `WorkerLost`, logged). `refused` is resolved once every one
        of them found the endpoint refusing connections."""
        keys = self.keys
        conns: list[Connection] = []

        def on_refused(_: Connection) -> None:
            if all(c.refused for c in conns) and not refused.done():
                refused.set_result(None)

        try:
            for key in candidates:
                info = WorkerInfo(f"static {self.endpoint}", self.endpoint, 0, public_key=key)
                # quiet: the refusals of an endpoint are warned about below, once.
                conns.append(Connection(info, keys=keys, quiet=True, on_refused=on_refused))
        except WoolError as e:
            _warnings.warn("connect", "cannot probe %r: %s", self.endpoint, str(e))
            for conn in conns:
                conn.close()
            return []
        return conns

    async def _handshake(self, conns: list[Connection], refused: asyncio.Future[None], timeout: float) -> Connection | None:
        """The first of `conns` to complete its handshake within `timeout`, or None (each
        one failed, or refused connections, or is still connecting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            done = [c for c in conns if c.connected.done() and c.lost is None]
            if done:
                return done[0]
            pending: list[asyncio.Future[None]] = [c.connected for c in conns if not c.connected.done()]
            remaining = deadline - loop.time()
            if not pending or remaining <= 0 or refused.done():
                break
            await asyncio.wait([*pending, refused], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if any(c.denied for c in conns):
            if not self._denied_warned:
                self._denied_warned = True
                log.warning("%s; leaving it out", next(c.lost for c in conns if c.denied))
        elif refused.done() and not self._refused_warned:
            self._refused_warned = True
            self.newly_refused = True
        return None


class Schedule:
    """When each endpoint is next asked (pure: times are given, in the event loop's clock)."""

    def __init__(self, poll_interval: float, recheck_interval: float) -> None:
        self.poll_interval = poll_interval
        self.recheck_interval = recheck_interval
        self._due: dict[str, float] = {}

    def track(self, endpoints: Iterable[str], now: float) -> None:
        """Ask exactly these endpoints from now on: the new ones at once."""
        wanted = dict.fromkeys(endpoints)
        self._due = {e: self._due.get(e, now) for e in wanted}

    def due(self, now: float) -> list[str]:
        return [e for e, at in self._due.items() if at <= now]

    def most_overdue(self, now: float, limit: int) -> list[str]:
        """At most `limit` of the endpoints due, those due the longest first."""
        return [e for e, _ in heapq.nsmallest(limit, ((e, at) for e, at in self._due.items() if at <= now), key=lambda x: x[1])]

    def asked(self, endpoint: str, found: bool, now: float) -> None:
        if endpoint in self._due:
            self._due[endpoint] = now + (self.recheck_interval if found else self.poll_interval)

    def next_at(self) -> float | None:
        """When the next endpoint is due; None if there are none."""
        return min(self._due.values(), default=None)

    def all_due(self, now: float) -> None:
        for endpoint in self._due:
            self._due[endpoint] = now


class Probes:
    """The probes of a watch over a set of endpoints that may change, each asked when due."""

    def __init__(self, keys: Keys | None, poll_interval: float, recheck_interval: float) -> None:
        self.keys = keys
        self.schedule = Schedule(poll_interval, recheck_interval)
        self._probes: dict[str, Probe] = {}
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # The endpoints due when this pass over them began and not asked yet, and those it
        # found refusing connections: warned about together once the pass is over.
        self._pass: set[str] = set()
        self._refused: list[str] = []

    def __len__(self) -> int:
        return len(self._probes)

    def track(self, endpoints: Iterable[str]) -> None:
        """Probe exactly these endpoints from now on (those kept keep their worker)."""
        wanted = list(dict.fromkeys(endpoints))
        self._probes = {e: self._probes.get(e) or Probe(e, self.keys) for e in wanted}
        self.schedule.track(wanted, self._loop.time())

    async def ask_due(self, timeout: float) -> dict[str, WorkerInfo]:
        """Ask the endpoints that are due, at most `ROUND` of them (those due the longest
        first: the rest are still due, and the watch comes back for them at once, having
        reported what this round found); the workers found now (asked or not), by id."""
        self._wake.clear()
        now = self._loop.time()
        if not self._pass:
            self._pass = set(self.schedule.due(now))
        due = [self._probes[e] for e in self.schedule.most_overdue(now, ROUND)]
        found = await asyncio.gather(*(probe.ask(timeout) for probe in due))
        now = self._loop.time()
        for probe, worker in zip(due, found, strict=True):
            self.schedule.asked(probe.endpoint, worker is not None, now)
        self._refused += [probe.endpoint for probe in due if probe.newly_refused]
        self._pass.difference_update(probe.endpoint for probe in due)
        self._pass.intersection_update(self._probes)  # endpoints no longer listed are not waited for
        if not self._pass and self._refused:  # one warning for the whole pass
            warn_refused(self._refused)
            self._refused = []
        return by_id(probe.worker for probe in self._probes.values())

    async def wait(self, until: float | None = None) -> None:
        """Sleep until the next endpoint is due (or `until`, if sooner), or a nudge."""
        at = self.schedule.next_at()
        if until is not None:
            at = until if at is None else min(at, until)
        # Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancellation that arrives
        # as the event is set, and the watch would never end.
        timer = None if at is None else self._loop.call_at(at, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    def nudge(self) -> None:
        """Something suggests a change: ask every endpoint at once. Thread-safe."""
        if not self._loop.is_closed():  # a watch never closed, on a loop that has ended
            self._loop.call_soon_threadsafe(self._nudged)

    def _nudged(self) -> None:
        self.schedule.all_due(self._loop.time())
        self._wake.set()


# The watches running in this process, with the discovery each follows: a `workers()` call on
# an equal discovery nudges them.
_watches: weakref.WeakKeyDictionary[Probes, object] = weakref.WeakKeyDictionary()


def watching(probes: Probes, discovery: object) -> None:
    _watches[probes] = discovery


def unwatching(probes: Probes) -> None:
    _watches.pop(probes, None)


def nudge_watches(discovery: object) -> None:
    """Every watch of `discovery` (or an equal one) in this process asks its endpoints now."""
    for probes, watched in list(_watches.items()):
        if watched == discovery:
            probes.nudge()


async def ask_once(endpoints: Iterable[str], keys: Keys | None, timeout: float) -> list[WorkerInfo]:
    """The workers answering at `endpoints` now (one probe each, `PROBES_AT_ONCE` at a
    time), sorted by id."""
    probes = [Probe(e, keys) for e in dict.fromkeys(endpoints)]
    found = await asyncio.gather(*(probe.ask(timeout) for probe in probes))
    warn_refused([probe.endpoint for probe in probes if probe.newly_refused])
    return sorted(by_id(found).values(), key=lambda w: w.id)


def warn_refused(refused: Sequence[str]) -> None:
    """One warning for these endpoints, found newly refusing connections."""
    if not refused:
        return
    if len(refused) == 1:
        log.warning("nothing at %r accepts connections; leaving it out until a worker answers there", refused[0])
        return
    named = ", ".join(repr(e) for e in refused[:NAMED_IN_WARNING])
    more = f" and {len(refused) - NAMED_IN_WARNING} more" if len(refused) > NAMED_IN_WARNING else ""
    log.warning(
        "nothing at %d endpoints (%s%s) accepts connections; leaving them out until a worker answers there",
        len(refused),
        named,
        more,
    )


def by_id(found: Iterable[WorkerInfo | None]) -> dict[str, WorkerInfo]:
    """Workers by id; an incarnation reachable at two listed endpoints counts once."""
    workers: dict[str, WorkerInfo] = {}
    for info in found:
        if info is not None:
            workers.setdefault(info.id, info)
    return workers
