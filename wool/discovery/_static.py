"""Static discovery: a fixed list of endpoints, for networks multicast does not cross (routed
subnets, most clouds) or when you simply know where your workers listen.

Theory of operation. An endpoint says where a worker listens, not which incarnation listens
there, and every call must name the incarnation. So each endpoint is asked with a `ping`, and
the `pong` names the worker (see `_probe` for how, and for keys). `watch()` holds no
connection to the endpoints between questions: it asks an endpoint where nobody answered yet
every `poll_interval` seconds, one where a worker answered every `recheck_interval` seconds
(by default thirty poll intervals), and all of them at once whenever `workers()` is called on
an equal discovery in the same process, as the mesh does when it loses a worker:
- an endpoint that does not answer (refuses connections, or does not complete its handshake
  within `timeout`) is absent;
- an answer naming another incarnation than before is a restarted worker: "removed" for the
  old one, then "added" for the new;
- a worker that completes its handshake but is slow to answer (its event loop busy) keeps
  its place: busy is not dead, and the mesh's own liveness judges the calls it runs.
`publish` and `withdraw` do nothing: the list is the configuration. A pong says the worker's
tags and call limit, so placement by tags works as with the other discoveries; it does not
say the pid, which reads as 0.

With keys, each endpoint is tried with every key these keys trust, and the key whose CURVE
handshake completes is the one published for the worker; a worker that refuses this
process's key is left out, with a warning once per endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import ClassVar

from .._endpoints import parse_endpoint
from .._info import DiscoveryEvent, WorkerInfo
from .._keys import Keys, PathLike, as_keys
from .._seconds import check_seconds
from ._local import _diff
from ._probe import RECHECKS, Probes, ask_once, nudge_watches, unwatching, watching


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


class StaticDiscovery:
    """Discovery of the workers listening at a fixed list of endpoints.

    Each endpoint is asked which worker incarnation serves there (a ping), over a connection
    opened for the question and closed after it. `watch()` asks an endpoint where no worker
    answered every `poll_interval` seconds, one where a worker answered every
    `recheck_interval` seconds, and every endpoint at once when `workers()` is called on an
    equal discovery in this process (the mesh does so when it loses a worker); it reports
    workers that appear, restart (removed, then added) or become unreachable (removed).
    `publish` and `withdraw` do nothing, so a worker started with a static list finds its
    peers through it and announces nothing. Picklable. Without keys, `tcp://` endpoints need
    `WorkerPool(insecure=True)` (see the security model); `ipc://` ones in a private
    directory do not.

    Args:
        endpoints: The workers' endpoints (`tcp://HOST:PORT`, `ipc://PATH`).
        poll_interval: Seconds between asks of an endpoint where no worker answered.
        recheck_interval: Seconds between asks of an endpoint where a worker answered
            (`None`: 30 poll intervals).
        timeout: Seconds a worker has to answer a ping.
        keys: A `wool.Keys` or a key directory, to reach workers that require CURVE keys:
            each endpoint's worker must hold a key these keys trust. A `WorkerPool` with
            keys, or a worker started with `--keys`, gives its keys to a static discovery
            that has none.

    Raises:
        TypeError: `endpoints` is a single string, or a number of seconds is not a number.
        ValueError: An endpoint cannot be connected to (a wildcard address, a missing
            port), or a number of seconds is not positive.

    Example:
        ```python
        workers = wool.StaticDiscovery(["tcp://10.0.0.5:7001", "tcp://10.0.0.6:7001"])
        async with wool.WorkerPool(discovery=workers, keys="~/.wool/keys"):
            ...
        ```
    """

    publishes: ClassVar[bool] = False  # a worker need not check that it is listed
    __slots__ = ("endpoints", "poll_interval", "recheck_interval", "timeout", "keys")

    def __init__(
        self,
        endpoints: Iterable[str],
        *,
        poll_interval: float = 1.0,
        recheck_interval: float | None = None,
        timeout: float = 1.0,
        keys: Keys | PathLike | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            raise TypeError("endpoints must be a list of endpoints, not a str")
        self.poll_interval = check_seconds(poll_interval, "poll_interval", positive=True)
        self.recheck_interval = recheck_interval_of(self.poll_interval, recheck_interval)
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
        """A copy of this discovery that reaches its workers with `keys`.

        Args:
            keys: The keys to use, or `None` for none.

        Returns:
            A new `StaticDiscovery` with the same endpoints and intervals.
        """
        return StaticDiscovery(
            self.endpoints,
            poll_interval=self.poll_interval,
            recheck_interval=self.recheck_interval,
            timeout=self.timeout,
            keys=keys,
        )

    async def publish(self, worker: WorkerInfo) -> None:
        """Nothing to do: the list of endpoints is the configuration."""

    async def withdraw(self, worker: WorkerInfo) -> None:
        """Nothing to do: the list of endpoints is the configuration."""

    async def workers(self) -> list[WorkerInfo]:
        """The workers answering at the endpoints now (one ping each, concurrently). Every
        watch of this discovery in this process asks its endpoints again too."""
        nudge_watches(self)
        return await ask_once(self.endpoints, self.keys, self.timeout)

    async def watch(self) -> AsyncGenerator[DiscoveryEvent, None]:
        """Yield "added" for each worker found, then one event per change (see the class for
        when each endpoint is asked). Stops cleanly on `aclose()` or cancellation."""
        probes = Probes(self.keys, self.poll_interval, self.recheck_interval)
        probes.track(self.endpoints)
        watching(probes, self)
        seen: dict[str, WorkerInfo] = {}
        try:
            while True:
                current = await probes.ask_due(self.timeout)
                events = _diff(seen, current)
                seen = current
                for event in events:
                    yield event
                await probes.wait()
        finally:
            unwatching(probes)


def recheck_interval_of(poll_interval: float, recheck_interval: float | None) -> float:
    """`recheck_interval` checked, or by default `RECHECKS` poll intervals."""
    if recheck_interval is None:
        return poll_interval * RECHECKS
    return check_seconds(recheck_interval, "recheck_interval", positive=True)
