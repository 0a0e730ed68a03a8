"""Zeroconf (mDNS / DNS-SD) discovery: workers on one network segment find each other with no
registry, server or configuration to share.

Theory of operation. All the `LanDiscovery` objects of a process that use the same interfaces
on the same event loop share one `_Hub`: one `AsyncZeroconf` (attached to the loop, so no
thread), one browser of `_wool._tcp.local.`, and a table of the workers seen, by service name.
The first user opens the hub and the last one closes it; users are each published worker,
each running `watch()` and each `workers()` call. So a worker that has withdrawn and stopped
watching, or a pool whose watch has ended, leaves no socket behind, and a `LanDiscovery`
pickles as its namespace and interfaces alone.

Publishing registers a service without probing (the name holds the worker's incarnation id,
unique per start, so there is no name to defend; probing would cost 1.5 s) and enters the
worker in the table at once; withdrawing sends the goodbye packets and removes it. Other
processes' workers enter the table when the browser resolves their records, and leave it on
their goodbye or when their records expire. A SIGKILLed worker sends no goodbye, and
python-zeroconf keeps a service's PTR record for at least ~19 minutes, so its entry lingers:
discovery is a hint, and the mesh's liveness decides which workers are usable. `watch()` reports the difference between the table and what it reported before, each
time the table changes. `workers()` on a hub that has only just begun browsing first listens
for `SETTLE` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from typing import Any

from zeroconf import DNSQuestionType, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from .._info import DiscoveryError, DiscoveryEvent, WorkerInfo
from . import _lan_record as record
from ._local import _MAX_NAME, _NAME, _diff

log = logging.getLogger("wool.discovery")

# How long a fresh browser listens before `workers()` trusts its table. Answers to multicast
# questions come within ~0.2 s, but a record multicast in the last second (a worker that just
# announced itself, or answered another browser) is held back until that second is over
# (RFC 6762 section 6): answers took up to 1.2 s here.
SETTLE = 1.5
_RESOLVE_TIMEOUT_MS = 3000
# Questions ask for multicast answers: several processes of one host share port 5353, and a
# unicast answer (to a "QU" question) reaches only one of them, maybe not the one that asked.
_QM = DNSQuestionType.QM

Key = tuple[str, ...] | None  # the interface addresses, sorted; None: all interfaces

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Key, _Hub]] = weakref.WeakKeyDictionary()


class _Hub:
    """One Zeroconf instance and what it knows; see the module docstring."""

    def __init__(self, key: Key, registry: dict[Key, _Hub]) -> None:
        self.key = key
        self._registry = registry
        try:
            self.zc = AsyncZeroconf(interfaces=list(key)) if key is not None else AsyncZeroconf()
        except Exception as e:
            raise DiscoveryError(
                f"cannot start Zeroconf on {'interfaces ' + ', '.join(key) if key else 'all interfaces'}: {e}"
            ) from e
        self.users = 0
        self.table: dict[str, tuple[str, WorkerInfo]] = {}  # service name -> (namespace, worker)
        self.registered: dict[str, AsyncServiceInfo] = {}  # published by this process
        self.withdrawn: set[str] = set()  # so a late answer cannot bring one back
        self.changed = asyncio.Event()  # set, and replaced, whenever the table changes
        self.scope = record.local_scope()
        self.networks = record.local_networks()
        self._browser: AsyncServiceBrowser | None = None
        self._settled_at = 0.0
        self._tasks: set[asyncio.Future[Any]] = set()
        self._malformed: set[str] = set()

    def snapshot(self, namespace: str) -> dict[str, WorkerInfo]:
        return {info.id: info for ns, info in self.table.values() if ns == namespace}

    def browse(self) -> None:
        if self._browser is None:
            self._settled_at = asyncio.get_running_loop().time() + SETTLE
            try:
                self._browser = AsyncServiceBrowser(
                    self.zc.zeroconf, record.SERVICE_TYPE, handlers=[self._on_change], question_type=_QM
                )
            except Exception as e:
                raise DiscoveryError(f"cannot browse for wool workers: {e}") from e

    async def settled(self) -> None:
        delay = self._settled_at - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    def _set(self, name: str, entry: tuple[str, WorkerInfo] | None) -> None:
        if entry is None:
            if self.table.pop(name, None) is None:
                return
        elif self.table.get(name) == entry:
            return
        else:
            self.table[name] = entry
        self.changed.set()
        self.changed = asyncio.Event()

    def _track(self, future: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(future)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("Zeroconf background task failed: %r", task.exception())

    def _on_change(self, zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if name in self.registered:
            return  # our own: the table already says what we published
        if state_change is ServiceStateChange.Removed:
            self._set(name, None)
        else:
            self._track(self._resolve(name))

    async def _resolve(self, name: str) -> None:
        service = AsyncServiceInfo(record.SERVICE_TYPE, name)
        if not service.load_from_cache(self.zc.zeroconf):
            if not await service.async_request(self.zc.zeroconf, _RESOLVE_TIMEOUT_MS, _QM):
                return
        if name in self.registered or name in self.withdrawn:
            return
        try:
            entry = record.decode(service.properties, service.parsed_addresses(), self.scope, self.networks)
        except (ValueError, TypeError) as e:
            if name not in self._malformed:  # once per record
                self._malformed.add(name)
                log.warning("ignoring Zeroconf service %r: %s", name, e)
            return
        self._set(name, entry)

    async def publish(self, worker: WorkerInfo, namespace: str, interfaces: Sequence[str] | None) -> bool:
        """Register or update `worker`; True if it is a new registration (a new hub user)."""
        name = record.instance_name(worker.id, namespace)
        endpoint, addresses, port = record.advertise(worker, interfaces)
        txt = record.encode(worker, namespace, endpoint, self.scope)
        service = AsyncServiceInfo(
            record.SERVICE_TYPE,
            name,
            port=port,
            properties=dict(txt),
            server=record.server_name(name),
            parsed_addresses=addresses,
        )
        entry = record.decode(service.properties, addresses, self.scope, self.networks)
        fresh = name not in self.registered
        try:
            if fresh:
                announced = await self.zc.async_register_service(service, cooperating_responders=True)
            else:
                announced = await self.zc.async_update_service(service)
        except Exception as e:
            raise DiscoveryError(f"cannot publish worker {worker.id!r} with Zeroconf: {e}") from e
        self._track(announced)
        self.registered[name] = service
        self.withdrawn.discard(name)
        self._set(name, entry)
        return fresh

    def forget(self, name: str) -> AsyncServiceInfo | None:
        """Take `name` out of this process's registrations and the table; its service, if
        this process had published it."""
        service = self.registered.pop(name, None)
        if service is not None:
            self.withdrawn.add(name)
            self._set(name, None)
        return service

    async def goodbye(self, service: AsyncServiceInfo) -> None:
        try:
            await (await self.zc.async_unregister_service(service))
        except Exception as e:
            log.warning("could not send the Zeroconf goodbye for %r: %s", service.name, e)

    async def release(self) -> None:
        """One user less; the last one closes the hub."""
        self.users -= 1
        if self.users > 0:
            return
        if self._registry.get(self.key) is self:
            del self._registry[self.key]  # a new user from now on opens a new hub
        for task in self._tasks:
            task.cancel()
        try:
            if self._browser is not None:
                await self._browser.async_cancel()
            await self.zc.async_close()
        except asyncio.CancelledError:
            self.zc.zeroconf.close()  # at least the sockets
            raise
        except Exception as e:
            log.debug("error closing Zeroconf: %s", e)


def _open_hub(key: Key) -> _Hub:
    registry = _hubs.setdefault(asyncio.get_running_loop(), {})
    hub = registry.get(key)
    if hub is None:
        hub = registry[key] = _Hub(key, registry)
    hub.users += 1
    return hub


@contextlib.asynccontextmanager
async def _using(key: Key) -> AsyncIterator[_Hub]:
    hub = _open_hub(key)
    try:
        yield hub
    finally:
        await hub.release()


class LanDiscovery:
    """Discovery over Zeroconf (mDNS): each worker is a `_wool._tcp.local.` service.

    Records on a LAN are not authenticated: a pool over `LanDiscovery` needs keys, or
    `insecure=True` to say that anyone on the network may pose as a worker (see the
    security model). Picklable: only the namespace and interfaces travel; each process opens
    its own Zeroconf on first use and closes it when nothing is published or watched any
    more. Methods raise `DiscoveryError` when Zeroconf cannot start or publish.

    Args:
        namespace: Keeps unrelated groups of workers on one network apart (all processes
            using the default one find each other): 1 to 100 characters of
            `A-Z a-z 0-9 . _ -`.
        interfaces: The IP addresses of the interfaces to use (`None`: all); a worker bound
            to a wildcard address is advertised at them.

    Raises:
        TypeError: `namespace` is not a string, or `interfaces` is a single string.
        ValueError: `namespace` is malformed, or `interfaces` is empty or holds something
            that is not an IP address.

    Example:
        ```python
        async with wool.WorkerPool(size=2, discovery=wool.LanDiscovery(), keys="keys/"):
            ...                            # 2 local workers, and every keyed worker on the LAN
        ```
    """

    __slots__ = ("namespace", "interfaces")

    def __init__(self, namespace: str = "default", interfaces: Sequence[str] | None = None) -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"discovery namespace must be a str, not {type(namespace).__name__}")
        if not namespace or len(namespace) > _MAX_NAME or not _NAME.fullmatch(namespace):
            raise ValueError(f"discovery namespace {namespace!r} must be 1 to {_MAX_NAME} characters of A-Z a-z 0-9 . _ -")
        if interfaces is not None:
            if isinstance(interfaces, str):
                raise TypeError("interfaces must be a list of IP addresses, not a str")
            for address in interfaces:
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    raise ValueError(f"interfaces must be IP addresses, got {address!r}") from None
            if not interfaces:
                raise ValueError("interfaces must not be empty (None: all interfaces)")
        self.namespace = namespace
        self.interfaces: tuple[str, ...] | None = None if interfaces is None else tuple(dict.fromkeys(interfaces))

    def __repr__(self) -> str:
        interfaces = f", interfaces={list(self.interfaces)!r}" if self.interfaces is not None else ""
        return f"LanDiscovery({self.namespace!r}{interfaces})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LanDiscovery):
            return NotImplemented
        return (self.namespace, self._key) == (other.namespace, other._key)

    def __hash__(self) -> int:
        return hash((LanDiscovery, self.namespace, self._key))

    @property
    def _key(self) -> Key:
        return None if self.interfaces is None else tuple(sorted(self.interfaces))

    async def publish(self, worker: WorkerInfo) -> None:
        """Announce `worker` (or update its record).

        Raises:
            DiscoveryError: Zeroconf could not start, or the record could not be published
                (too large, or no address to advertise).
        """
        hub = _open_hub(self._key)
        fresh = False
        try:
            fresh = await hub.publish(worker, self.namespace, self.interfaces)
        finally:
            if not fresh:  # a registration holds the hub open until it is withdrawn
                await hub.release()

    async def withdraw(self, worker: WorkerInfo) -> None:
        """Send `worker`'s goodbye, if this process published it (a record another process
        published can only expire)."""
        hub = _hubs.get(asyncio.get_running_loop(), {}).get(self._key)
        service = hub.forget(record.instance_name(worker.id, self.namespace)) if hub is not None else None
        if hub is None or service is None:
            return
        try:
            await hub.goodbye(service)
        finally:
            await hub.release()  # the registration's hold on the hub

    async def workers(self) -> list[WorkerInfo]:
        """The workers currently announced in this namespace (after a short listening window
        if this process was not already browsing)."""
        async with _using(self._key) as hub:
            hub.browse()
            await hub.settled()
            return sorted(hub.snapshot(self.namespace).values(), key=lambda w: w.id)

    async def watch(self) -> AsyncGenerator[DiscoveryEvent, None]:
        """Yield "added" for each worker as it is found, then one event per change. Stops
        cleanly on `aclose()` or cancellation, closing Zeroconf if nothing else uses it."""
        async with _using(self._key) as hub:
            hub.browse()
            seen: dict[str, WorkerInfo] = {}
            while True:
                changed = hub.changed
                current = hub.snapshot(self.namespace)
                events = _diff(seen, current)
                seen = current
                for event in events:
                    yield event
                await changed.wait()
