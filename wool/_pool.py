"""`WorkerPool`: spawn local workers, join discovered ones, and make them the current mesh.

On entry the pool spawns its workers (all at once, forked from one pre-imported template
process), waits for each one's handshake and
connection, joins whatever its discovery already lists, and follows the namespace from then
on. On exit it cancels calls still in flight, stops its workers (graceful, then forced),
withdraws their registry entries and removes a private namespace: nothing is left behind,
including when the body raised or was cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar

from . import _metrics
from ._errors import WorkerStartError
from ._keys import Keys, PathLike, as_keys
from ._memory import check_memory_limit
from ._replacer import Replacer
from ._seconds import check_seconds
from ._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE, check_liveness, check_max_message_size
from .caller import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    LoadBalancer,
    Mesh,
    broadcast,
    check_idle_timeout,
    current_mesh_var,
    output,
)
from .discovery import Discovery, DnsDiscovery, LocalDiscovery, StaticDiscovery, WorkerInfo, keyless_refusal
from .worker import (
    DEFAULT_GRACE,
    DEFAULT_METRICS_ADDRESS,
    SETTLE_QUIET,
    LifespanFactory,
    Template,
    WorkerConfig,
    WorkerProcess,
    check_factory,
    check_port,
    check_recycle_after,
    remove_socket,
    templates_work,
)

R = TypeVar("R")


class WorkerPool:
    """The workers that routine calls in this block dispatch to.

    - `WorkerPool(size=N)` spawns N local worker processes (`WorkerPool()`: one per CPU).
    - `WorkerPool(discovery=d)` spawns nothing and uses the workers `d` finds.
    - `WorkerPool(size=N, discovery=d)` does both: its workers join `d`'s namespace.

    Positional `tags` are published with the spawned workers. Entering raises
    `WorkerStartError` if a worker fails to start (the others are stopped). Exiting cancels
    calls still in flight and stops the spawned workers, waiting up to `grace` seconds for a
    graceful exit before killing them.

    `liveness` bounds how long a worker (or, on the worker, a caller) may stop answering
    before its calls fail with `WorkerLost` (or are cancelled). `max_calls` limits how many
    calls each spawned worker runs at once; past it calls go to workers with room, or wait.

    `connect_timeout` bounds how long a call waits for a worker that can run it: one still
    connecting, or, over a `discovery`, one that has not appeared yet (a pool started
    together with its workers, by a script, a systemd unit or a compose file, needs no
    polling). Then the call raises `NoWorkersAvailable`.

    `keys` (a `wool.Keys`, or a key directory made by `python -m wool.keys generate DIR`)
    makes every connection CURVE-encrypted and authenticated: the pool uses only discovered
    workers whose public key it trusts (workers without keys are ignored), and its spawned
    workers accept only callers it trusts. Without keys, workers that require them are
    ignored. A worker that refuses the pool's key is dropped; a call with no other worker
    raises `NoWorkersAvailable` naming the refusal. Loading a key directory raises `OSError`
    or `ValueError`.

    Without keys, the spawned workers listen on `ipc://` sockets in the private runtime
    directory: only this user (and root) can call them. A keyless pool refuses (`ValueError`)
    a discovery through which others could pose as workers, `LanDiscovery` or a
    `StaticDiscovery` listing tcp:// endpoints (or ipc:// ones outside a private directory),
    unless `insecure=True`: then whoever answers there gets the pool's calls, and what it
    replies is unpickled here.

    `max_message_size` (bytes, default 128 MiB) bounds each message part: one pickled
    argument tuple or result, or one large buffer in it (bytes, bytearray, numpy array),
    which travel as parts of their own. Every socket of the pool and its workers refuses
    larger parts before allocating them, so a peer that has not authenticated cannot make
    them allocate more; a call whose arguments or result exceed it fails with
    `DispatchError` naming the limit. Raise it for larger values.

    `lifespan`, a zero-argument callable returning an async context manager, is entered by
    each spawned worker before its first call and exited after its last (`wool.state()`
    returns what it yielded). If entering raises, `WorkerStartError` names the exception and
    has it as `__cause__`, with its remote traceback.

    Connections are opened on demand: this process (and each spawned worker) connects to a
    worker when it first dispatches to it, and closes a connection that carried no call for
    `idle_timeout` seconds (None: never), so idle processes hold no sockets to their peers.
    `metrics_port` makes each spawned worker serve Prometheus metrics over HTTP at
    `metrics_address` (loopback by default): with 0, each on a free port of its own; with N,
    worker i on port N + i (a taken one fails the start with `WorkerStartError` naming it).
    Each worker publishes its address as the tag `metrics=HOST:PORT` (see `pool.workers`)
    and answers only requests bearing this user's token (`wool.metrics.token()`). Raises
    `RuntimeError` if prometheus_client is not installed.

    `recycle_after=N` makes each spawned worker stop taking calls after N calls, finish the
    running ones and exit; the pool starts its replacement first (the worker asks for one at
    90 % of N). `memory_limit` (bytes, or a size such as `"2GiB"`) recycles a worker whose RSS
    exceeds it between calls; one above 1.2 times it while calls run is killed and replaced,
    and its calls fail with `WorkerLost` naming the limit and the RSS seen. Lifespans are
    exited in the old worker and entered in its replacement. No call fails because a worker
    recycles: one that reaches it as it stops is refused unrun and sent to another worker.

    What routines print and log on workers that forward output (hand-started and remote
    ones, by default) is written in this process, prefixed with the worker (`(worker 3f2a
    pid=4122 host=h1)`; log records on the `wool.remote` logger); spawned workers write to the terminal they share with this process, unless
    `forward_output=True`. `forward_output=False` drops forwarded output in this process.
    """

    def __init__(
        self,
        *tags: str,
        size: int | None = None,
        discovery: Discovery | None = None,
        loadbalancer: LoadBalancer | None = None,
        start_timeout: float = 60.0,
        grace: float = DEFAULT_GRACE,
        liveness: float = DEFAULT_LIVENESS,
        max_calls: int | None = None,
        keys: Keys | PathLike | None = None,
        insecure: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        metrics_port: int | None = None,
        metrics_address: str = DEFAULT_METRICS_ADDRESS,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        lifespan: LifespanFactory | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        recycle_after: int | None = None,
        memory_limit: int | str | None = None,
        forward_output: bool | None = None,
    ) -> None:
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if size is not None and size < 0:
            raise ValueError(f"size must not be negative, got {size}")
        if discovery is not None and not isinstance(discovery, Discovery):
            raise TypeError(f"discovery must implement wool.Discovery (publish, withdraw, workers, watch), got {discovery!r}")
        if size is None and discovery is None:
            size = os.cpu_count() or 1
        if size == 0 and discovery is None:
            raise ValueError("a pool with size=0 needs a discovery to find workers in")
        for tag in tags:
            if isinstance(tag, int) and not isinstance(tag, bool):
                raise TypeError(f"WorkerPool's positional arguments are worker tags, got {tag!r}: did you mean size={tag!r}?")
            if not isinstance(tag, str) or not tag:
                raise TypeError(f"tags must be non-empty strings, got {tag!r}")
        if loadbalancer is not None and not callable(getattr(loadbalancer, "choose", None)):
            raise TypeError(f"loadbalancer must have a choose(candidates) method, got {loadbalancer!r}")
        if max_calls is not None and (not isinstance(max_calls, int) or isinstance(max_calls, bool)):
            raise TypeError(f"max_calls must be an int or None, not {type(max_calls).__name__}")
        if max_calls is not None and max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls}")
        if metrics_port is not None:
            check_port(metrics_port)
            if metrics_port and metrics_port + (size or 0) - 1 > 65535:
                raise ValueError(f"metrics_port {metrics_port} leaves no port for each of {size} workers")
            _metrics.require()
        self.metrics_port = metrics_port
        self.metrics_address = metrics_address
        self.lifespan = check_factory(lifespan) if lifespan is not None else None
        self.keys = as_keys(keys)
        if not isinstance(insecure, bool):
            raise TypeError(f"insecure must be a bool, not {type(insecure).__name__}")
        if self.keys is not None and insecure:
            raise ValueError("insecure=True and keys exclude each other: a pool with keys only uses workers that prove theirs")
        if self.keys is None and not insecure:
            refusal = keyless_refusal(discovery, "insecure=True")
            if refusal is not None:
                raise ValueError(refusal)
        self.insecure = insecure
        if self.keys is not None and isinstance(discovery, (StaticDiscovery, DnsDiscovery)) and discovery.keys is None:
            discovery = discovery.with_keys(self.keys)  # its probes must pass the handshake too
        self.liveness = check_liveness(liveness)
        self.max_message_size = check_max_message_size(max_message_size)
        self.idle_timeout = check_idle_timeout(idle_timeout)
        self.connect_timeout = check_seconds(connect_timeout, "connect_timeout")
        self.max_calls = max_calls
        self.recycle_after = check_recycle_after(recycle_after)
        self.memory_limit = check_memory_limit(memory_limit)
        self._replacer: Replacer | None = None
        if forward_output is not None and not isinstance(forward_output, bool):
            raise TypeError(f"forward_output must be a bool or None, not {type(forward_output).__name__}")
        self.forward_output = forward_output
        self._output_was: bool | None = None
        self.tags = frozenset(tags)
        self.size = size or 0
        self.discovery = discovery
        self.loadbalancer = loadbalancer
        self.start_timeout = check_seconds(start_timeout, "start_timeout", positive=True)
        self.grace = check_seconds(grace, "grace")
        self._namespace: Discovery | None = None
        self._mesh: Mesh | None = None
        self._processes: list[WorkerProcess] = []
        self._template: Template | None = None  # forks the spawned workers (see worker._template)
        self._token: Token[Mesh | None] | None = None

    @property
    def workers(self) -> list[WorkerInfo]:
        """The workers currently in rotation."""
        return self._mesh.workers if self._mesh is not None else []

    async def wait_for_workers(
        self,
        predicate: Callable[[list[WorkerInfo]], bool] = bool,
        timeout: float | None = None,
    ) -> list[WorkerInfo]:
        """Wait until the workers in rotation satisfy `predicate` (by default: there is at
        least one), for example `lambda ws: len(ws) >= 4` on a pool over workers that are
        still starting. Returns them; raises `TimeoutError` after `timeout` seconds."""
        if self._mesh is None:
            raise RuntimeError("the pool is not open")
        return await self._mesh.wait_until(predicate, timeout)

    async def broadcast(self, routine: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> dict[str, R | BaseException]:
        """Run `routine(*args, **kwargs)` once on every worker in rotation that has its tags
        (and those of the enclosing `wool.options`). Returns each worker's id (`WorkerInfo.id`)
        mapped to its result or to the exception it raised (`WorkerLost` included): one
        failure never hides the others. At most once per worker; workers that join meanwhile
        are left out. `wool.options(timeout=...)` and cancellation apply to the whole
        broadcast: every call is cancelled, and `TimeoutError`/`CancelledError` raised.
        `NoWorkersAvailable` if no worker has the tags."""
        if self._mesh is None:
            raise RuntimeError("the pool is not open")
        return await broadcast(self._mesh, routine, args, kwargs)

    @property
    def processes(self) -> list[WorkerProcess]:
        """The worker processes this pool spawned."""
        return list(self._processes)

    async def __aenter__(self) -> WorkerPool:
        if self._mesh is not None:
            raise RuntimeError("this WorkerPool is already open")
        self._namespace = self.discovery or LocalDiscovery(f"pool-{uuid.uuid4().hex[:16]}")
        self._mesh = Mesh(
            self._namespace,
            self.loadbalancer,
            connect_timeout=self.connect_timeout,
            liveness=self.liveness,
            keys=self.keys,
            open_namespace=self.discovery is not None,
            max_message_size=self.max_message_size,
            idle_timeout=self.idle_timeout,
        )
        try:
            await self._start()
        except BaseException:
            await self._shutdown()
            raise
        self._token = current_mesh_var.set(self._mesh)
        if self.forward_output is False:
            self._output_was, output.enabled = output.enabled, False
        return self

    async def _start(self) -> None:
        assert self._mesh is not None and self._namespace is not None
        config = WorkerConfig(
            discovery=self._namespace,
            tags=self.tags,
            grace=self.grace,
            liveness=self.liveness,
            max_calls=self.max_calls,
            settle=SETTLE_QUIET if self.discovery is not None else 0.0,
            keys=self.keys,
            insecure=self.insecure,
            max_message_size=self.max_message_size,
            idle_timeout=self.idle_timeout,
            lifespan=self.lifespan,
            sys_path=tuple(os.path.abspath(p) if p else os.getcwd() for p in sys.path),
            recycle_after=self.recycle_after,
            memory_limit=self.memory_limit,
            forward_output=self.forward_output is True,
        )
        if self.size and templates_work():
            self._template = Template()
        self._processes = [WorkerProcess(self._config_of(config, i), self._template) for i in range(self.size)]
        results = await asyncio.gather(*(w.start(self.start_timeout) for w in self._processes), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        infos = [r for r in results if isinstance(r, WorkerInfo)]
        for info in infos:
            self._mesh.add(info, connect=True)  # entry waits until the pool can reach each one
        await self._mesh.wait_connected(infos, self.start_timeout)
        if infos and not self._mesh.workers:
            raise WorkerStartError("the pool's workers started but none accepted a connection")
        if self._processes and (self.recycle_after is not None or self.memory_limit is not None):
            self._replacer = Replacer(
                self._processes,
                self._mesh,
                self._namespace,
                self._template,
                memory_limit=self.memory_limit,
                start_timeout=self.start_timeout,
            )
            self._replacer.start()
        if self.discovery is not None:
            for info in await self.discovery.workers():
                self._mesh.add(info)
        self._mesh.start_watching()

    def _config_of(self, config: WorkerConfig, index: int) -> WorkerConfig:
        if self.metrics_port is None:
            return config
        port = self.metrics_port + index if self.metrics_port else 0
        return dataclasses.replace(config, metrics_port=port, metrics_address=self.metrics_address)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._output_was is not None:
            output.enabled, self._output_was = self._output_was, None
        if self._token is not None:
            try:
                current_mesh_var.reset(self._token)
            except ValueError:  # exited in another context than it was entered in
                current_mesh_var.set(None)
            self._token = None
        await self._shutdown()

    async def _shutdown(self) -> None:
        mesh, self._mesh = self._mesh, None
        replacer, self._replacer = self._replacer, None
        try:
            if replacer is not None:
                await replacer.close()
            if mesh is not None:
                await mesh.close()
        finally:
            processes, self._processes = self._processes, []
            await asyncio.gather(*(w.stop(self.grace) for w in processes), return_exceptions=True)
            template, self._template = self._template, None
            if template is not None:
                await template.close()
            for w in processes:
                if w.info is None:
                    continue
                if w.returncode is not None:  # a killed worker could not remove its socket
                    try:
                        remove_socket(w.info.endpoint)
                    except Exception:
                        pass
                if self._namespace is not None:  # nor withdraw itself
                    try:
                        await self._namespace.withdraw(w.info)
                    except Exception:
                        pass
