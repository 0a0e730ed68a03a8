"""Static discovery: a fixed list of endpoints, for networks multicast does not cross (routed
subnets, most clouds) or when you simply know where your workers listen.

Theory of operation. An endpoint says where a worker listens, not which incarnation listens
there, and every call must name the incarnation. So each endpoint is asked with a `ping`, over
the same kind of `Connection` a caller uses, and the `pong` names the worker. `watch()` keeps
one connection per endpoint and asks again every `poll_interval` seconds:
- an endpoint that has not answered yet, or whose connection was lost (the worker died, or
  its heartbeats stopped), is absent;
- an answer naming another incarnation than before is a restarted worker: "removed" for the
  old one, then "added" for the new;
- a connected worker that is slow to answer (its event loop busy) keeps its place: busy is
  not dead, and the mesh's own liveness judges the calls it runs.
A ping is only sent once the connection's handshake has completed, so an endpoint that stays
down does not pile up queued pings. `publish` and `withdraw` do nothing: the list is the
configuration. A pong says the worker's tags and call limit, so placement by tags works
as with the other discoveries; it does not say the pid, which reads as 0.

With keys, an endpoint does not say which public key its worker holds either, and a CURVE
client must name it before the first byte. So each endpoint is tried with every key these
keys trust (its own first, in a deployment sharing one key directory the only one), all at
once: a worker holding another key breaks the handshake off at once, and the key whose
handshake completes is the one published for the worker. A worker that refuses this
process's key is left out, with a warning once per endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterable
from typing import ClassVar

from .. import protocol as p
from .._endpoints import parse_endpoint
from .._errors import WoolError
from .._info import DiscoveryEvent, WorkerInfo
from .._keys import Keys, PathLike, as_keys
from .._seconds import check_seconds
from ..caller import Connection
from ._local import _diff

log = logging.getLogger("wool.discovery")


def check_endpoint(endpoint: str) -> str:
    """`endpoint` if a caller can connect to it (`tcp://HOST:PORT` or `ipc://PATH`), else
    `ValueError` saying why."""
    parsed = parse_endpoint(endpoint)
    if parsed.scheme == "inproc":
        raise ValueError(f"{endpoint!r} is not an endpoint: expected tcp://HOST:PORT or ipc://PATH")
    if parsed.scheme == "tcp" and parsed.port == 0:
        raise ValueError(f"{endpoint!r} has no valid port")
    if parsed.is_wildcard:
        raise ValueError(f"{endpoint!r} is a wildcard: name an address the worker can be reached at")
    return endpoint


def _host(endpoint: str) -> str:
    parsed = parse_endpoint(endpoint)
    address = parsed.address
    return str(address) if address is not None else parsed.host


class _Probe:
    """One endpoint: its connection, and the worker last found there."""

    def __init__(self, endpoint: str, keys: Keys | None = None) -> None:
        self.endpoint = endpoint
        self.keys = keys
        self.conn: Connection | None = None
        self.worker: WorkerInfo | None = None
        self._trying: list[Connection] = []  # one per candidate server key, until one connects
        self._warned = False

    async def ask(self, timeout: float) -> WorkerInfo | None:
        """The worker at the endpoint now, or None."""
        lost = self.conn is not None and self.conn.lost is not None
        if lost:
            self.close()
        if self.conn is None:
            self.worker = None
            if not self._trying and not self._try_keys():
                return None
            if lost:
                return None  # the worker that was here is gone; whoever comes next, next round
            self.conn = await self._handshake(timeout)
            if self.conn is None:
                return None
        conn = self.conn
        call_id = conn.new_call_id()
        try:
            reply = await asyncio.wait_for(conn.request(p.Ping(call_id), False), timeout)
        except TimeoutError:
            return self.worker  # connected but busy: busy is not dead
        except WoolError:
            self.worker = None
            return None
        finally:
            conn.forget(call_id)
        if not isinstance(reply, p.Pong):
            return self.worker
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
            )
        return self.worker

    def _try_keys(self) -> bool:
        """Start connecting with each candidate server key; False if the endpoint is unusable."""

        keys = self.keys
        candidates: list[str | None] = [keys.public, *sorted(keys.trusted - {keys.public})] if keys is not None else [None]
        try:
            for key in candidates:
                info = WorkerInfo(f"static {self.endpoint}", self.endpoint, 0, public_key=key)
                # One warning per endpoint that refuses connections, not one per key.
                self._trying.append(Connection(info, keys=keys, quiet=bool(self._trying)))
        except WoolError:
            self.close()
            return False
        return True

    async def _handshake(self, timeout: float) -> Connection | None:
        """The first candidate connection to complete its handshake within `timeout`; the
        others are closed. None if none did (those still connecting are kept for next time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            done = [c for c in self._trying if c.connected.done() and c.lost is None]
            if done:
                chosen = done[0]
                for conn in self._trying:
                    if conn is not chosen:
                        conn.close()
                self._trying = []
                return chosen
            pending = [c.connected for c in self._trying if not c.connected.done()]
            remaining = deadline - loop.time()
            if not pending or remaining <= 0:
                break
            await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        for conn in self._trying:
            if conn.lost is not None:
                if conn.denied and not self._warned:
                    self._warned = True
                    log.warning("%s; leaving it out", conn.lost)
                conn.close()
        self._trying = [c for c in self._trying if c.lost is None]
        return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        for conn in self._trying:
            conn.close()
        self._trying = []


class StaticDiscovery:
    """Discovery of the workers listening at a fixed list of endpoints.

    Each endpoint is asked which worker incarnation serves there (a ping, answered within
    `timeout` seconds); `watch()` asks again every `poll_interval` seconds and reports workers
    that appear, restart (removed, then added) or become unreachable (removed). `publish` and
    `withdraw` do nothing, so a worker started with a static list finds its peers through it
    and announces nothing. Picklable; raises `ValueError` for an endpoint one cannot connect
    to (a wildcard address, a missing port).

    `keys` (a `wool.Keys` or key directory) reaches workers that require CURVE keys: each
    endpoint's worker must hold a key these keys trust. A `WorkerPool` with keys, or a worker
    started with `--keys`, gives its keys to a static discovery that has none."""

    publishes: ClassVar[bool] = False  # a worker need not check that it is listed
    __slots__ = ("endpoints", "poll_interval", "timeout", "keys")

    def __init__(
        self,
        endpoints: Iterable[str],
        *,
        poll_interval: float = 1.0,
        timeout: float = 1.0,
        keys: Keys | PathLike | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            raise TypeError("endpoints must be a list of endpoints, not a str")
        self.poll_interval = check_seconds(poll_interval, "poll_interval", positive=True)
        self.timeout = check_seconds(timeout, "timeout", positive=True)
        self.endpoints = tuple(dict.fromkeys(check_endpoint(e) for e in endpoints))
        self.keys = as_keys(keys)

    def __repr__(self) -> str:
        return f"StaticDiscovery({list(self.endpoints)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StaticDiscovery):
            return NotImplemented
        return (self.endpoints, self.keys) == (other.endpoints, other.keys)

    def __hash__(self) -> int:
        return hash((StaticDiscovery, self.endpoints))

    def with_keys(self, keys: Keys | None) -> StaticDiscovery:
        """This discovery, reaching its workers with `keys`."""
        return StaticDiscovery(self.endpoints, poll_interval=self.poll_interval, timeout=self.timeout, keys=keys)

    async def publish(self, worker: WorkerInfo) -> None:
        """Nothing to do: the list of endpoints is the configuration."""

    async def withdraw(self, worker: WorkerInfo) -> None:
        """Nothing to do: the list of endpoints is the configuration."""

    async def workers(self) -> list[WorkerInfo]:
        """The workers answering at the endpoints now (one ping each, concurrently)."""
        probes = [_Probe(e, self.keys) for e in self.endpoints]
        try:
            return sorted(_by_id(await asyncio.gather(*(q.ask(self.timeout) for q in probes))).values(), key=lambda w: w.id)
        finally:
            for probe in probes:
                probe.close()

    async def watch(self) -> AsyncGenerator[DiscoveryEvent, None]:
        """Yield "added" for each worker found, then one event per change, asking every
        `poll_interval` seconds. Stops cleanly on `aclose()` or cancellation."""
        probes = [_Probe(e, self.keys) for e in self.endpoints]
        seen: dict[str, WorkerInfo] = {}
        try:
            while True:
                current = _by_id(await asyncio.gather(*(q.ask(self.timeout) for q in probes)))
                events = _diff(seen, current)
                seen = current
                for event in events:
                    yield event
                await asyncio.sleep(self.poll_interval)
        finally:
            for probe in probes:
                probe.close()


def _by_id(found: Iterable[WorkerInfo | None]) -> dict[str, WorkerInfo]:
    """Workers by id; an incarnation reachable at two listed endpoints counts once."""
    workers: dict[str, WorkerInfo] = {}
    for info in found:
        if info is not None:
            workers.setdefault(info.id, info)
    return workers
