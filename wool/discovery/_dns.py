"""DNS discovery: the workers at the addresses a DNS name lists, as a cluster publishes the pods
behind a headless Service (Kubernetes: A/AAAA records per ready pod, SRV records per named port).

Theory of operation. A worker cannot put itself into DNS (the cluster does that), so `publish`
and `withdraw` do nothing, and `watch()` follows the name:
- every `interval` seconds it resolves the name to a set of endpoints: with no port, the
  name's SRV records (each target's A and AAAA addresses, at the record's port); with a port,
  the name's own A and AAAA addresses at that port;
- each endpoint is asked which worker serves there with the very probes `StaticDiscovery`
  uses (a connection opened for a ping naming the incarnation and closed after it, the same
  key handling, see `_probe`): an endpoint newly listed at once, one where nobody answered
  every `poll_interval` seconds, one where a worker answered every `recheck_interval`
  seconds, and all of them when `workers()` is called on an equal discovery in this process
  (the mesh does so when it loses a worker). So a worker restarted at the same address is
  "removed" then "added", an address where nobody answers is absent, and an address the
  name stops listing is removed at once;
- a name that does not exist, or has no such records, is an empty set: every worker is gone;
- a resolution that fails (no server answers, a timeout, a server failure) changes nothing:
  the endpoints last resolved are kept and still asked, and a warning says so (when it starts
  failing, then at most once a minute, and once when it recovers).
DNS answers are not authenticated: they only say where to look. What serves there is what
the probe learns, and with keys only a worker holding a trusted key completes the handshake.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from typing import ClassVar

from .._info import DiscoveryError, DiscoveryEvent, WorkerInfo
from .._keys import Keys, PathLike, as_keys
from .._seconds import check_seconds
from ._local import _diff
from ._probe import Probes, ask_once, nudge_watches, unwatching, watching
from ._static import recheck_interval_of

log = logging.getLogger("wool.discovery")

DEFAULT_INTERVAL = 5.0  # seconds between resolutions
WARN_EVERY = 60.0  # while resolution keeps failing, at most one warning per this many seconds
_truncated: set[tuple[object, ...]] = set()  # names whose answer was cut, warned about once


def parse_nameserver(text: str) -> tuple[str, int]:
    """`ADDRESS`, `ADDRESS:PORT` (IPv4) or `[ADDRESS]:PORT` (IPv6) -> (address, port); port
    53 when not given. Raises `ValueError` naming the problem."""
    if not isinstance(text, str):
        raise TypeError(f"a nameserver must be a str, not {type(text).__name__}")
    address, port = text, "53"
    if text.startswith("["):
        address, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected [IPV6]:PORT")
        port = rest[1:] or port
    elif text.count(":") == 1:
        address, _, port = text.partition(":")
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"nameserver {text!r} is not an IP address (optionally with :PORT)") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"nameserver {text!r} has no valid port")
    return address, int(port)


def check_name(name: object) -> str:
    """`name` if it is a DNS name one can look up (printable ASCII labels of 1 to 63
    characters, 253 in all, an optional final dot), else `ValueError` saying why."""
    if not isinstance(name, str):
        raise TypeError(f"a DNS name must be a str, not {type(name).__name__}")
    labels = name.removesuffix(".").split(".")
    if not name or any(not c.isascii() or not c.isprintable() or c.isspace() or c in ":@,\\" for c in name):
        raise ValueError(f"{name!r} is not a DNS name")
    if any(not 0 < len(label) < 64 for label in labels):
        raise ValueError(f"{name!r} is not a DNS name: every label must have 1 to 63 characters")
    if len(name.removesuffix(".")) > 253:
        raise ValueError(f"{name!r} is not a DNS name: longer than 253 characters")
    return name


class DnsDiscovery:
    """Discovery of the workers at the addresses a DNS name resolves to.

    The name is resolved every `interval` seconds and each address asked which worker serves
    there: every `poll_interval` seconds while nobody answers there, every
    `recheck_interval` seconds once a worker has; a failed resolution keeps the workers last
    found, since a DNS outage says nothing about the workers. `publish` and `withdraw` do
    nothing: a worker started with `--discovery dns:...` finds its peers through the name,
    and the cluster lists it once it is ready. DNS answers are not authenticated, so a pool
    over a DNS name needs keys or `insecure=True` (see the security model). Picklable.

    Args:
        name: With `port`, a name whose A and AAAA records are the workers' addresses (a
            headless Service's name: `wool-workers.default.svc.cluster.local`); without, an
            SRV name whose records give each worker's host and port
            (`_wool._tcp.wool-workers.default.svc.cluster.local`).
        port: The port every worker listens on, or `None` to read ports from SRV records.
        interval: Seconds between resolutions of the name.
        poll_interval: Seconds between asks of an address where no worker answered.
        recheck_interval: Seconds between asks of an address where a worker answered
            (`None`: 30 poll intervals).
        timeout: Seconds a DNS server, and then a worker, has to answer.
        nameservers: Servers to ask instead of the system's (`"10.96.0.10"`,
            `"127.0.0.1:5353"`, `"[::1]:5353"`); the system's come from /etc/resolv.conf,
            with its search domains, so a short name such as `wool-workers` works inside a
            Kubernetes namespace.
        keys: A `wool.Keys` or a key directory, to reach workers that require CURVE keys,
            as with `StaticDiscovery`; a `WorkerPool` with keys, or a worker started with
            `--keys`, gives its keys to a DNS discovery that has none.

    Raises:
        TypeError: `port` is not an int, `nameservers` is a single string, or a number of
            seconds is not a number.
        ValueError: A bad name, port or server, or a number of seconds that is not
            positive.

    Example:
        ```python
        workers = wool.DnsDiscovery("wool-workers", 7001)
        async with wool.WorkerPool(discovery=workers, keys="/etc/wool/keys"):
            ...
        ```
    """

    publishes: ClassVar[bool] = False  # a worker need not check that it is listed
    __slots__ = ("name", "port", "interval", "poll_interval", "recheck_interval", "timeout", "nameservers", "keys")

    def __init__(
        self,
        name: str,
        port: int | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        poll_interval: float = 1.0,
        recheck_interval: float | None = None,
        timeout: float = 1.0,
        nameservers: Iterable[str] | None = None,
        keys: Keys | PathLike | None = None,
    ) -> None:
        self.name = check_name(name)
        if port is not None:
            if isinstance(port, bool) or not isinstance(port, int):
                raise TypeError(f"port must be an int or None, not {type(port).__name__}")
            if not 0 < port < 65536:
                raise ValueError(f"port must be between 1 and 65535, not {port}")
        self.port = port
        self.interval = check_seconds(interval, "interval", positive=True)
        self.poll_interval = check_seconds(poll_interval, "poll_interval", positive=True)
        self.recheck_interval = recheck_interval_of(self.poll_interval, recheck_interval)
        self.timeout = check_seconds(timeout, "timeout", positive=True)
        if isinstance(nameservers, str):
            raise TypeError("nameservers must be a list of addresses, not a str")
        servers = None if nameservers is None else tuple(dict.fromkeys(parse_nameserver(s) for s in nameservers))
        if servers == ():
            raise ValueError("nameservers must name at least one server (or be None for the system's)")
        self.nameservers = servers
        self.keys = as_keys(keys)

    def __repr__(self) -> str:
        servers = "" if self.nameservers is None else f", nameservers={[f'{a}:{p}' for a, p in self.nameservers]!r}"
        return f"DnsDiscovery({self.name!r}, {self.port!r}{servers})"

    def _key(self) -> tuple[object, ...]:
        return (self.name, self.port, self.nameservers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DnsDiscovery):
            return NotImplemented
        return (self._key(), self.keys) == (other._key(), other.keys)

    def __hash__(self) -> int:
        return hash((DnsDiscovery, self._key()))

    def with_keys(self, keys: Keys | None) -> DnsDiscovery:
        """A copy of this discovery that reaches its workers with `keys`.

        Args:
            keys: The keys to use, or `None` for none.

        Returns:
            A new `DnsDiscovery` with the same name, port and intervals.
        """
        other = copy.copy(self)
        other.keys = keys
        return other

    async def publish(self, worker: WorkerInfo) -> None:
        """Nothing to do: the cluster publishes the name's records, not the worker."""

    async def withdraw(self, worker: WorkerInfo) -> None:
        """Nothing to do: the cluster removes a stopping worker's records."""

    async def workers(self) -> list[WorkerInfo]:
        """The workers answering at the name's addresses now (one ping each, concurrently);
        every watch of this discovery in this process asks its endpoints again too.

        Raises:
            DiscoveryError: The name could not be resolved.
        """
        nudge_watches(self)
        return await ask_once(await self.resolve(), self.keys, self.timeout)

    async def resolve(self) -> list[str]:
        """The endpoints the name lists now.

        Returns:
            The endpoints, sorted, at most the first 512 (with a warning if it lists more);
                empty if the name does not exist or has no such records.

        Raises:
            DiscoveryError: No server gave an answer.
        """
        endpoints, listed = await self._resolve()
        self._note_truncation(listed, len(endpoints))
        return endpoints

    async def _resolve(self) -> tuple[list[str], int]:
        """The endpoints to probe, and how many the name listed."""
        # Imported on first use, not with wool: see `_dns_records`.
        from ._dns_records import MAX_ENDPOINTS, ResolutionError, resolve_endpoints

        try:
            found = await resolve_endpoints(self.name, self.port, self.nameservers, self.timeout)
        except ResolutionError as e:
            raise DiscoveryError(f"could not resolve {self.name!r}{self._where()}: {str(e)!r}") from None
        return sorted(found)[:MAX_ENDPOINTS], len(found)

    def _note_truncation(self, listed: int, kept: int) -> None:
        """Warn that the answer was cut, once per name in this process until it fits again
        (the watch resolves it every `interval`, and a pool may run several watches)."""
        key = self._key()
        if listed <= kept:
            _truncated.discard(key)
        elif key not in _truncated:
            _truncated.add(key)
            log.warning("%r lists %d endpoints, more than a watch probes: using the first %d", self.name, listed, kept)

    def _where(self) -> str:
        return "" if self.nameservers is None else " at " + ", ".join(f"{a}:{p}" for a, p in self.nameservers)

    async def watch(self) -> AsyncGenerator[DiscoveryEvent, None]:
        """Yield "added" for each worker found, then one event per change: the name resolved
        every `interval` seconds, its endpoints asked as the class says. Stops cleanly on
        `aclose()` or cancellation."""
        probes = Probes(self.keys, self.poll_interval, self.recheck_interval)
        watching(probes, self)
        outage = _Outage(self)
        loop = asyncio.get_running_loop()
        seen: dict[str, WorkerInfo] = {}
        resolve_at = loop.time()
        try:
            while True:
                if loop.time() >= resolve_at:
                    resolve_at = loop.time() + self.interval
                    try:
                        endpoints, listed = await self._resolve()
                    except DiscoveryError as e:
                        outage.failed(e, len(probes))
                    else:
                        outage.recovered()
                        self._note_truncation(listed, len(endpoints))
                        probes.track(endpoints)
                current = await probes.ask_due(self.timeout)
                events = _diff(seen, current)
                seen = current
                for event in events:
                    yield event
                await probes.wait(until=resolve_at)
        finally:
            unwatching(probes)


class _Outage:
    """Warnings about failed resolutions: when they start, at most one per `WARN_EVERY`
    seconds while they go on, and one when they stop."""

    def __init__(self, discovery: DnsDiscovery) -> None:
        self.discovery = discovery
        self.since: float | None = None
        self.warned = 0.0

    def failed(self, error: DiscoveryError, kept: int) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        elif now - self.warned < WARN_EVERY:
            return
        self.warned = now
        if kept:
            log.warning("%s; keeping the %d endpoints resolved before (failing for %.0f s)", error, kept, now - self.since)
        else:
            log.warning("%s; no workers found yet (failing for %.0f s)", error, now - self.since)

    def recovered(self) -> None:
        if self.since is not None:
            log.warning("resolving %r works again after %.0f s", self.discovery.name, time.monotonic() - self.since)
            self.since = None
