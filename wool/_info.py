"""The discovery contract: how workers are published and found.

A backend publishes the workers of this process, withdraws them, and lets a pool follow the
current set of workers in its namespace. Discovery is a *hint*: an entry says where a worker
was, not that it is alive. Liveness is the connection's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Literal, Protocol, runtime_checkable

from ._endpoints import parse_endpoint
from ._errors import WoolError
from ._keys import check_key


class DiscoveryError(WoolError):
    """A discovery backend could not publish or read its registry.

    Raised by a backend's methods: `LocalDiscovery` when the registry file cannot be
    written (reading a corrupt one never raises), `LanDiscovery` when Zeroconf cannot start
    or publish.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a caller needs to reach one worker incarnation: an entry of a discovery, and
    what `pool.workers` lists.

    Attributes:
        id: Unique per process start, so a restarted worker on the same endpoint is a new
            worker; requests carry it and a worker rejects requests meant for another
            incarnation.
        endpoint: Where the worker listens (`ipc://PATH` or `tcp://HOST:PORT`).
        pid: The worker's process id on its own host (0 when a static or DNS discovery
            found it by asking its endpoint).
        host: The name of the worker's host, for display.
        tags: The worker's tags; a call needing tags goes only to workers with all of them.
        version: The wire protocol version the worker speaks.
        max_calls: The worker's limit of concurrent calls (`None`: unlimited); callers keep
            no more than that many open on it, and send the rest to workers with room.
        public_key: The worker's CURVE public key (z85) when it requires keys: a caller
            with keys connects only if it trusts that key, and the handshake proves the
            worker holds its secret key.
        max_message_size: The largest message part (frame) in bytes the worker accepts
            (`None`: not published); callers check their calls against it before sending,
            since the worker drops a connection that sends more.
    """

    id: str
    endpoint: str
    pid: int
    host: str = ""
    tags: frozenset[str] = frozenset()
    version: int = 1
    max_calls: int | None = None
    public_key: str | None = None
    max_message_size: int | None = None

    def to_dict(self) -> dict[str, object]:
        """The entry as plain data (JSON-compatible), as registries and records store it."""
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "pid": self.pid,
            "host": self.host,
            "tags": sorted(self.tags),
            "version": self.version,
            "max_calls": self.max_calls,
            "public_key": self.public_key,
            "max_message_size": self.max_message_size,
        }

    @classmethod
    def from_dict(cls, data: object) -> WorkerInfo:
        """Build an entry from `to_dict` output, checking every field (the data is
        untrusted: it comes from a registry file or a network record).

        Args:
            data: A mapping as `to_dict` returns.

        Returns:
            The entry.

        Raises:
            ValueError: A field is missing or malformed; the message names it.
        """
        if not isinstance(data, dict):
            raise ValueError(f"worker entry must be a mapping, not {type(data).__name__}")
        try:
            wid, endpoint, pid = data["id"], data["endpoint"], data["pid"]
        except KeyError as e:
            raise ValueError(f"worker entry lacks {e.args[0]!r}") from None
        host, tags, version = data.get("host", ""), data.get("tags", []), data.get("version", 1)
        if not isinstance(wid, str) or not wid:
            raise ValueError("worker entry 'id' must be a non-empty string")
        try:
            parse_endpoint(endpoint)
        except (TypeError, ValueError):
            raise ValueError(f"worker entry 'endpoint' is not an endpoint: {endpoint!r}") from None
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"worker entry 'pid' must be a positive integer: {pid!r}")
        if not isinstance(host, str):
            raise ValueError("worker entry 'host' must be a string")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError("worker entry 'tags' must be a list of strings")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError("worker entry 'version' must be an integer")
        max_calls = data.get("max_calls")
        if max_calls is not None and (not isinstance(max_calls, int) or isinstance(max_calls, bool) or max_calls < 1):
            raise ValueError(f"worker entry 'max_calls' must be a positive integer or null: {max_calls!r}")
        public_key = data.get("public_key")
        if public_key is not None:
            try:
                check_key(public_key)
            except (ValueError, TypeError):
                raise ValueError(f"worker entry 'public_key' must be a z85 CURVE key or null: {public_key!r}") from None
        max_message_size = data.get("max_message_size")
        if max_message_size is not None and (
            not isinstance(max_message_size, int) or isinstance(max_message_size, bool) or max_message_size < 1
        ):
            raise ValueError(f"worker entry 'max_message_size' must be a positive integer or null: {max_message_size!r}")
        return cls(wid, endpoint, pid, host, frozenset(tags), version, max_calls, public_key, max_message_size)


@dataclasses.dataclass(frozen=True, slots=True)
class DiscoveryEvent:
    """A change in a namespace, as `Discovery.watch` reports it.

    Attributes:
        kind: `"added"`, `"updated"` (the same worker id, a changed entry) or `"removed"`.
        worker: The worker's entry (for `"removed"`, the last one known).
    """

    kind: Literal["added", "updated", "removed"]
    worker: WorkerInfo


@runtime_checkable
class Discovery(Protocol):
    """How a pool finds workers and a worker announces itself: what
    `WorkerPool(discovery=...)` takes.

    wool's backends are `LocalDiscovery`, `LanDiscovery`, `StaticDiscovery` and
    `DnsDiscovery`; any object with these methods will do (a `typing.Protocol`).
    Implementations must be picklable: a pool hands its discovery to the workers it spawns so
    that they find each other (the mesh). All methods are called from a running event loop.
    A backend whose `publish` does nothing (the list is configuration, or DNS) may say so with
    a class attribute `publishes = False`: its workers then do not check that they are listed.
    Methods raise `DiscoveryError` when the backend cannot do what is asked.

    Discovery is a hint: an entry says where a worker was, not that it is alive; the
    connections to workers find that out.
    """

    async def publish(self, worker: WorkerInfo) -> None:
        """Announce `worker`: add it, or replace the entry with the same id.

        Args:
            worker: The entry of a worker of this process.

        Raises:
            DiscoveryError: The entry could not be published.
        """
        ...

    async def withdraw(self, worker: WorkerInfo) -> None:
        """Remove `worker`'s entry. Withdrawing an absent worker is not an error.

        Args:
            worker: An entry `publish` was given.

        Raises:
            DiscoveryError: The entry could not be removed.
        """
        ...

    async def workers(self) -> list[WorkerInfo]:
        """The workers currently published.

        Returns:
            Their entries (entries of dead local processes excluded).

        Raises:
            DiscoveryError: The registry could not be read.
        """
        ...

    def watch(self) -> AsyncIterator[DiscoveryEvent]:
        """Follow the namespace.

        Returns:
            An async iterator of events, first an `"added"` event for every current worker,
                then one per later change, until it is closed (`aclose()`).
        """
        ...
