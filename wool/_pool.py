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
import contextvars
import dataclasses
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar

from . import _metrics, _spin
from ._errors import WorkerStartError
from ._executor import ExecutorCore
from ._interrupt import CtrlC, waiting_for
from ._keys import Keys, PathLike, as_keys
from ._loopthread import BlockingIterator, LoopThread, as_coroutine, discard, run_blocking, running_loop
from ._memory import check_memory_limit
from ._replacer import Replacer
from ._seconds import check_seconds
from ._spin import check_idle
from ._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE, check_liveness, check_max_message_size
from .caller import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    LoadBalancer,
    Mesh,
    OpenPool,
    broadcast,
    check_idle_timeout,
    current_mesh_var,
    output,
    pool_closed,
    pool_opened,
)
from .caller import map as wool_map
from .discovery import (
    Discovery,
    DnsDiscovery,
    LocalDiscovery,
    StaticDiscovery,
    WorkerInfo,
    keyless_refusal,
    prune_registry,
    runtime_dir,
)
from .sharing import check_share_cache, release_scope
from .worker import (
    DEFAULT_GRACE,
    DEFAULT_METRICS_ADDRESS,
    DEFAULT_THREADS,
    SETTLE_QUIET,
    LifespanFactory,
    Template,
    WorkerConfig,
    WorkerProcess,
    check_factory,
    check_port,
    check_recycle_after,
    check_threads,
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
    `threads` limits how many plain `def` routines each spawned worker runs at once (each
    in a thread; default 1).

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

    `idle="spin"` trades a core for latency: after each message, this process's event loop
    (and each spawned worker's) polls its sockets instead of sleeping, for `spin_us`
    microseconds (default 500), then sleeps in the kernel as usual (docs/how-to/tune-latency.md).
    Workers found through `discovery` spin only if started with `--idle spin`.

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

    `share_cache` bounds the bytes of `wool.share`d values each spawned worker keeps mapped
    (default: 1 GiB, or a quarter of the host's memory if less); past it, the least recently
    used are dropped and mapped again when a call needs them. Values shared while the pool is
    current are released when it closes.

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
        threads: int = DEFAULT_THREADS,
        keys: Keys | PathLike | None = None,
        insecure: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        metrics_port: int | None = None,
        metrics_address: str = DEFAULT_METRICS_ADDRESS,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        lifespan: LifespanFactory | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        share_cache: int | None = None,
        idle: str = "sleep",
        spin_us: int | None = None,
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
        self.idle, self.spin_us = check_idle(idle, spin_us)
        self._spinning: asyncio.AbstractEventLoop | None = None
        self.max_calls = max_calls
        self.share_cache = check_share_cache(share_cache) if share_cache is not None else None
        self.threads = check_threads(threads)
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
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the pool was opened on
        self._thread: LoopThread | None = None  # that loop's thread, when opened with `with`
        self._current_loop_set = False  # `with` made that loop this thread's current one
        self._ctrl_c: CtrlC | None = None  # while open: what Ctrl-C does (see `_interrupt`)
        # While closing: what is being stopped, for a Ctrl-C that stops it now.
        self._closing: tuple[Mesh | None, list[WorkerProcess], Template | None] | None = None

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
        await self.start()
        return self

    async def start(self) -> None:
        """Open the pool, as `async with` does, for code that cannot hold a block open: a
        notebook cell (later cells use the pool: it is the process's most recent open pool),
        or an object's own start/close methods. Pair it with `await pool.close()`."""
        if self._mesh is not None:
            raise RuntimeError("this WorkerPool is already open")
        self._namespace = self.discovery or LocalDiscovery(f"pool-{uuid.uuid4().hex[:16]}")
        if isinstance(self._namespace, LocalDiscovery) or self.size:
            # Checked here first, so that an unsafe one (say, below a parent other users can
            # write to) is this `DiscoveryError`, before any worker tries to listen in it.
            runtime_dir()
        if self.idle == "spin":  # before the mesh: its connections' sockets join the spinner
            self._spinning = asyncio.get_running_loop()
            _spin.enable(self._spinning, self.spin_us)
        self._mesh = Mesh(
            self._namespace,
            self.loadbalancer,
            connect_timeout=self.connect_timeout,
            liveness=self.liveness,
            keys=self.keys,
            open_namespace=self.discovery is not None,
            max_message_size=self.max_message_size,
            idle_timeout=self.idle_timeout,
            insecure=self.insecure,
        )
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise
        self._token = current_mesh_var.set(self._mesh)
        self._loop = asyncio.get_running_loop()
        pool_opened(OpenPool(self._mesh, self._loop, self))
        self._ctrl_c = CtrlC(self.grace, self._waiting_for, self._stop_now, self._interrupted).install()
        if self.forward_output is False:
            self._output_was, output.enabled = output.enabled, False

    async def _start(self) -> None:
        assert self._mesh is not None and self._namespace is not None
        config = WorkerConfig(
            discovery=self._namespace,
            tags=self.tags,
            grace=self.grace,
            liveness=self.liveness,
            max_calls=self.max_calls,
            threads=self.threads,
            settle=SETTLE_QUIET if self.discovery is not None else 0.0,
            keys=self.keys,
            insecure=self.insecure,
            max_message_size=self.max_message_size,
            idle_timeout=self.idle_timeout,
            lifespan=self.lifespan,
            share_cache=self.share_cache,
            idle=self.idle,
            spin_us=self.spin_us if self.idle == "spin" else None,
            sys_path=tuple(os.path.abspath(p) if p else os.getcwd() for p in sys.path),
            recycle_after=self.recycle_after,
            memory_limit=self.memory_limit,
            forward_output=self.forward_output is True,
        )
        if self.size or isinstance(self.discovery, LocalDiscovery):
            await asyncio.to_thread(prune_registry)  # what killed pools and workers left here
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
        try:
            await self.close()
        except asyncio.CancelledError:
            if exc is None:
                raise
            # Cancelled while closing after the body raised: that exception goes on as it is
            # (a first Ctrl-C's KeyboardInterrupt, or the cancellation itself).

    async def close(self) -> None:
        """Close the pool, as leaving `async with` does (see `start`). Closing a closed pool
        does nothing."""
        if self._mesh is not None:
            pool_closed(self._mesh)
        if self._output_was is not None:
            output.enabled, self._output_was = self._output_was, None
        if self._token is not None:
            try:
                current_mesh_var.reset(self._token)
            except ValueError:  # exited in another context than it was entered in
                current_mesh_var.set(None)
            self._token = None
        try:
            await self._close()
        finally:
            self._loop = None

    def __enter__(self) -> WorkerPool:
        """Open the pool from synchronous code: it runs on an event loop on a thread of its
        own, which is also this thread's current event loop inside the block (so
        `asyncio.gather(...)` written here runs on it). Use `pool.run(...)`, `pool.map(...)` or
        `pool.executor()`; leaving the block closes the pool as `async with` does."""
        self._open_on_thread()
        if running_loop() is None:
            assert self._thread is not None
            asyncio.set_event_loop(self._thread.loop)
            self._current_loop_set = True
        return self

    def _open_on_thread(self) -> None:
        if self._mesh is not None:
            raise RuntimeError("this WorkerPool is already open")
        thread = LoopThread("wool-pool")
        try:
            run_blocking(thread.loop, self.start(), contextvars.Context())
        except BaseException:
            thread.stop()
            raise
        self._thread = thread

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            raise RuntimeError("this WorkerPool was not opened with `with`")
        try:
            run_blocking(thread.loop, self.close(), contextvars.Context(), cancel_on_interrupt=False)
        finally:
            thread.stop()
            if self._current_loop_set:
                self._current_loop_set = False
                asyncio.set_event_loop(None)

    def run(self, awaitable: Awaitable[R], /) -> R:
        """Run `awaitable` (a routine call, any coroutine, `asyncio.gather(...)`) on the pool's
        event loop with this pool current, from synchronous code or another thread; block until
        it ends and return its result or raise its exception. Ctrl-C while it runs cancels it
        (a routine's remote side sees `CancelledError`) and raises `KeyboardInterrupt`.
        `RuntimeError` if the pool is not open, or if called on the loop the pool runs on
        (`await` there instead)."""
        loop = self._loop
        if self._mesh is None or loop is None:
            discard(awaitable)
            raise RuntimeError("the pool is not open: pool.run() works inside `with wool.WorkerPool(...) as pool:`")
        if running_loop() is loop:
            discard(awaitable)
            raise RuntimeError("pool.run() would block the event loop this pool runs on: `await` the call instead")
        return run_blocking(loop, as_coroutine(awaitable, loop), self._context())

    def map(
        self,
        routine: Callable[[Any], Awaitable[R]],
        iterable: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 64,
        ordered: bool = True,
    ) -> BlockingIterator[R]:
        """`wool.map` for synchronous code: a plain iterator of `routine(item)` for each item,
        with the same laziness, bound on calls in flight, order and error semantics. Closing
        it (`close()`, or `with pool.map(...) as results:`) cancels the calls still in flight."""
        if self._mesh is None:
            raise RuntimeError("the pool is not open: pool.map() works inside `with wool.WorkerPool(...) as pool:`")
        return BlockingIterator(wool_map(routine, iterable, concurrency=concurrency, ordered=ordered), self.run)

    def executor(self) -> Executor:
        """A `concurrent.futures.Executor` (a `wool.Executor`) whose calls run on this pool;
        shutting it down leaves the pool open."""
        if self._mesh is None:
            raise RuntimeError("the pool is not open")
        return Executor(pool=self)

    def _context(self) -> contextvars.Context:
        """A copy of the caller's context with this pool current: what its calls run in."""
        context = contextvars.copy_context()
        context.run(current_mesh_var.set, self._mesh)
        return context

    async def _close(self) -> None:
        """`_shutdown`, to its end even if cancelled meanwhile (then re-raising the
        cancellation): a pool half closed would leave processes and files behind. The
        cancellation (a first Ctrl-C during a slow close) does not cut it short: the grace
        period bounds it, or a second Ctrl-C (see `_interrupt`)."""
        shutdown = asyncio.ensure_future(self._shutdown())
        cancelled = False
        while not shutdown.done():
            try:
                await asyncio.shield(shutdown)
            except asyncio.CancelledError:
                if shutdown.done():
                    break
                cancelled = True
        shutdown.result()
        if cancelled:
            raise asyncio.CancelledError

    def _waiting_for(self) -> str | None:
        """What a Ctrl-C is waiting for now, in words (None: nothing, the pool is idle)."""
        mesh, processes, _ = self._closing or (self._mesh, self._processes, None)
        calls = [(c.worker.id, c.worker.pid, c.in_flight) for c in (mesh.connections if mesh is not None else ())]
        stopping = sum(w.returncode is None for w in processes)
        return waiting_for(self.grace, calls, stopping, self._closing is not None)

    def _interrupted(self) -> None:
        """A first Ctrl-C: the calls it cancels on workers that do not answer are the pool's
        to report (`_waiting_for`), not each connection's."""
        mesh = self._closing[0] if self._closing is not None else self._mesh
        for conn in mesh.connections if mesh is not None else ():
            conn.quiet = True

    async def _stop_now(self) -> None:
        """A second Ctrl-C: fail the calls in flight, kill the workers and the template. The
        pool's close (under way, or to come as the program unwinds) then finds them gone and
        removes their sockets and registry entries."""
        mesh, processes, template = self._closing or (self._mesh, self._processes, self._template)
        if mesh is not None:
            await mesh.close()
        await asyncio.gather(*(w.kill() for w in processes), return_exceptions=True)
        if template is not None:
            await template.kill()

    async def _shutdown(self) -> None:
        mesh, self._mesh = self._mesh, None
        processes, self._processes = self._processes, []
        template, self._template = self._template, None
        self._closing = (mesh, processes, template)
        if self._ctrl_c is not None:
            self._ctrl_c.closing()
        if mesh is not None:
            release_scope(mesh)  # what was shared while this pool was current
        if self._spinning is not None:
            _spin.disable(self._spinning)
            self._spinning = None
        replacer, self._replacer = self._replacer, None
        try:
            if replacer is not None:
                await replacer.close()
            if mesh is not None:
                await mesh.close()
        finally:
            try:
                await self._stop(processes, template)
            finally:
                ctrl_c, self._ctrl_c = self._ctrl_c, None
                if ctrl_c is not None:
                    if ctrl_c.stopping is not None:
                        await asyncio.gather(ctrl_c.stopping, return_exceptions=True)
                    ctrl_c.uninstall()
                self._closing = None

    async def _stop(self, processes: list[WorkerProcess], template: Template | None) -> None:
        await asyncio.gather(*(w.stop(self.grace) for w in processes), return_exceptions=True)
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


class Executor(ExecutorCore):
    """A `concurrent.futures.Executor` whose calls run on wool workers: `Executor(...)` takes
    `WorkerPool`'s arguments and opens that pool at the first `submit` (on a thread of its
    own); `shutdown` closes it. `pool.executor()` (or `Executor(pool=pool)`) runs calls on an
    open pool and leaves it open.

    `submit(fn, *args, **kwargs)` takes routines and plain picklable functions (the ones
    `ProcessPoolExecutor` takes); `future.cancel()` also cancels a call that is running (the
    routine sees `CancelledError` on its worker). Works with `loop.run_in_executor` and
    wherever a library accepts an `Executor`. `shutdown(cancel_futures=True)` cancels every
    call not ended, running ones included."""

    def __init__(self, *tags: str, pool: WorkerPool | None = None, **pool_args: Any) -> None:
        super().__init__()
        if pool is not None and (tags or pool_args):
            raise TypeError("Executor takes either an open pool or WorkerPool's arguments, not both")
        if pool is not None and not isinstance(pool, WorkerPool):
            raise TypeError(f"pool must be a wool.WorkerPool, not {type(pool).__name__}")
        self._owned = pool is None
        self._pool = pool if pool is not None else WorkerPool(*tags, **pool_args)
        self._opening = threading.Lock()

    def _target(self) -> tuple[asyncio.AbstractEventLoop, contextvars.Context]:
        pool = self._pool
        if self._owned:
            with self._opening:
                if pool._thread is None:
                    pool._open_on_thread()
        if pool._loop is None or pool._mesh is None:
            raise RuntimeError("the executor's pool is closed")
        return pool._loop, pool._context()

    def _release(self, wait: bool) -> None:
        if not self._owned:
            return
        with self._opening:
            pool, self._owned = self._pool, False
            if pool._thread is None:
                return
            if wait:
                pool.__exit__(None, None, None)
            else:
                threading.Thread(target=self._close_when_idle, args=(pool,), name="wool-executor-shutdown").start()

    def _close_when_idle(self, pool: WorkerPool) -> None:
        with self._lock:
            self._idle.wait_for(lambda: not self._unwinding)
        pool.__exit__(None, None, None)
