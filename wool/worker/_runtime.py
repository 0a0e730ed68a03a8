"""A worker process's life: bind, publish, serve, and on a stop signal drain and withdraw.

A worker is both a server and a caller: it opens a `Mesh` over its own discovery namespace
(itself included), installed as the current mesh for every call it runs, so routines that
call routines dispatch to peers. A stop request (SIGTERM, SIGINT, or the spawning pool closing
the worker's stdin) stops new calls, lets running calls finish within the grace period, then
cancels the rest, withdraws from discovery and closes every socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .. import _spin, sharing
from .. import protocol as p
from .._spin import check_idle
from .._state import WorkerState, worker_state_var
from ..caller import Mesh, current_mesh_var
from ..discovery import Discovery, WorkerInfo
from . import _lifespan
from ._config import WorkerConfig
from ._endpoint import private_endpoint, remove_socket
from ._metrics_http import Exposition
from ._output import FLUSH_INTERVAL, OutputForwarder
from ._recycle import RecyclePolicy, Recycler
from ._server import SETTLE_QUIET, Server

log = logging.getLogger("wool.worker")

T = TypeVar("T")

# How often a worker checks that discovery still lists it. Each check reads the registry and
# checks its entries' pids: every second, that was most of what 32 idle workers cost.
REPUBLISH_INTERVAL = 5.0


async def _stay_published(discovery: Discovery, info: WorkerInfo) -> None:
    """Publish `info` again whenever discovery no longer lists it (a registry file that was
    clobbered, truncated, or rewritten by a writer that could not read it)."""
    while True:
        await asyncio.sleep(REPUBLISH_INTERVAL)
        try:
            if all(w.id != info.id for w in await discovery.workers()):
                log.warning("worker %s was missing from %r; publishing it again", info.id, discovery)
                await discovery.publish(info)
        except Exception as e:  # DiscoveryError or a user backend's failure: try again later
            log.warning("could not check this worker's entry in %r: %s", discovery, e)


def raise_open_file_limit() -> None:
    """Raise the soft limit of open descriptors to the hard one: at the usual 1,024, about
    1,000 idle unauthenticated connections (each holds a descriptor until its handshake
    times out) exhausted a worker, and trusted callers could no longer connect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:  # an unlimited hard limit is above the kernel's nr_open
        log.debug("could not raise the open-file limit from %d to %d: %s", soft, hard, e)


async def _unless_stopped(entering: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """`entering`'s result, or None if a stop was requested first (it is then cancelled):
    a lifespan that hangs must not make the worker deaf to SIGTERM."""
    task = asyncio.ensure_future(entering)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result() if not task.cancelled() else None


async def serve(
    config: WorkerConfig,
    on_ready: Callable[[WorkerInfo], None],
    *,
    watch_fd: int | None = None,
    notify: Callable[[dict[str, str]], None] | None = None,
    hard_exit: Callable[[], None] | None = None,
) -> str | None:
    """Run a worker until asked to stop. `watch_fd`, when given, is a pipe whose end of file
    means the parent is gone or wants us to stop; such a worker belongs to its parent and
    ignores SIGINT (a Ctrl-C reaches the whole process group: the pool decides). `notify`
    tells the spawning pool of a recycle (see `_recycle`); `hard_exit` ends the process when
    its memory limit is far exceeded and the loop does not respond. Returns why the worker
    recycled, or None if it was stopped."""
    raise_open_file_limit()
    loop = asyncio.get_running_loop()
    idle, spin_us = check_idle(config.idle, config.spin_us)
    if idle == "spin":  # for the life of the process: before any socket is made
        _spin.enable(loop, spin_us)
    stop = asyncio.Event()
    requested: list[bool] = []  # a stop was asked for (signal, stdin): it wins over a recycle

    def request_stop() -> None:
        requested.append(True)
        stop.set()

    signals = (signal.SIGTERM,) if watch_fd is not None else (signal.SIGTERM, signal.SIGINT)
    if watch_fd is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in signals:
        loop.add_signal_handler(sig, request_stop)
    if watch_fd is not None:

        def on_readable() -> None:
            try:
                data = os.read(watch_fd, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(watch_fd)
                request_stop()

        loop.add_reader(watch_fd, on_readable)

    worker_id = uuid.uuid4().hex
    if config.share_cache is not None:
        sharing.cache.resize(config.share_cache)
    keys = config.keys
    # The metrics endpoint first: its address is published with the worker, and told in pongs.
    exposition = Exposition.start(config.metrics_port, config.metrics_address) if config.metrics_port is not None else None
    tags = config.tags if exposition is None else config.tags | {exposition.tag}
    try:
        mesh = Mesh(
            config.discovery,
            liveness=config.liveness,
            keys=keys,
            max_message_size=config.max_message_size,
            idle_timeout=config.idle_timeout,
            insecure=config.insecure,
        )
        # The server's socket callbacks, and so every call task, run in this context.
        current_mesh_var.set(mesh)
        bind = config.bind if config.bind is not None else private_endpoint(worker_id)
        holder = WorkerState(_lifespan.describe(config.lifespan) if config.lifespan is not None else None)
        worker_state_var.set(holder)
        server = Server(
            worker_id,
            bind,
            liveness=config.liveness,
            max_calls=config.max_calls,
            keys=keys,
            tags=tags,
            threads=config.threads,
            max_message_size=config.max_message_size,
        )
    except BaseException:
        if exposition is not None:
            exposition.close()
        raise
    if exposition is not None:
        exposition.watch(server)
    forwarder: OutputForwarder | None = None
    flusher: asyncio.TimerHandle | None = None
    if config.forward_output:
        forwarder = server.output = OutputForwarder(
            server, f"{worker_id[:4]} pid={os.getpid()} host={socket.gethostname()}", tee=watch_fd is None
        )
        forwarder.install()

        def flush() -> None:
            nonlocal flusher
            assert forwarder is not None
            forwarder.flush_all()
            flusher = loop.call_later(FLUSH_INTERVAL, flush)

        flusher = loop.call_later(FLUSH_INTERVAL, flush)
    recycler: Recycler | None = None
    if config.recycle_after is not None or config.memory_limit is not None:

        def stop_for_recycling() -> None:
            server.accepting = False  # now: calls already read in this batch go elsewhere
            server.stopping = "recycling"
            stop.set()

        recycler = Recycler(
            RecyclePolicy(config.recycle_after, config.memory_limit),
            stop=stop_for_recycling,
            notify=notify,
            fail_calls=server.fail_calls,
            running=lambda: server.in_flight > server.queued,
            hard_exit=hard_exit or (lambda: os._exit(70)),
        )
        server.on_call_started = recycler.call_started
        server.on_call_ended = recycler.call_ended
    info = WorkerInfo(
        worker_id,
        server.endpoint,
        os.getpid(),
        socket.gethostname(),
        tags,
        p.VERSION,
        config.max_calls,
        keys.public if keys is not None else None,
        config.max_message_size,
    )
    discovery = config.discovery
    published = False
    keeper: asyncio.Task[None] | None = None
    lifespan: Any = None  # the entered lifespan's context manager, until it exits
    try:
        mesh.add(info)
        mesh.start_watching()
        if config.lifespan is not None:
            # With the mesh up, so that the lifespan can call routines; before publishing,
            # so that no caller reaches this worker before `wool.state()` is ready.
            entered = await _unless_stopped(_lifespan.enter(config.lifespan), stop)
            if entered is None:
                return None
            lifespan, holder.value = entered
            holder.ready = True
        if discovery is not None:
            await discovery.publish(info)
            published = True
            if getattr(discovery, "publishes", True):  # False: the list is not this worker's to keep
                keeper = loop.create_task(_stay_published(discovery, info))
        log.info(
            "worker %s serving at %s (pid %d)%s",
            worker_id,
            server.endpoint,
            os.getpid(),
            f"; metrics at http://{exposition.address}/metrics" if exposition is not None else "",
        )
        on_ready(info)
        await stop.wait()
        log.info("worker %s stopping with %d calls in flight", worker_id, server.in_flight)
        server.accepting = False
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if discovery is not None and published:
            # First, so that pools stop choosing this worker while its calls drain.
            published = False
            await discovery.withdraw(info)
        stopping = loop.time()
        await server.drain(config.grace)
        if lifespan is not None:
            manager, lifespan = lifespan, None
            await _lifespan.leave(manager, config.lifespan, config.grace - (loop.time() - stopping))
        # A recycling worker settles even in a pool's private namespace: the pool's calls
        # keep coming until it has been refused once.
        settle = config.settle or (SETTLE_QUIET if recycler is not None and recycler.reason else 0.0)
        if settle > 0:
            await server.settle(config.grace, settle)
    finally:
        if recycler is not None:
            recycler.close()
        if flusher is not None:
            flusher.cancel()
        if forwarder is not None:
            forwarder.uninstall()
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if discovery is not None and published:
            await discovery.withdraw(info)
        if lifespan is not None:  # serving failed: still tear the lifespan down
            await _lifespan.leave(lifespan, config.lifespan, config.grace)
        sharing.release_scope(mesh)  # what its routines shared (a forked worker runs no atexit)
        await mesh.close()
        if exposition is not None:
            exposition.close()
        server.close()
        if config.bind is None:
            remove_socket(server.endpoint)
        if watch_fd is not None:
            loop.remove_reader(watch_fd)
        for sig in signals:
            loop.remove_signal_handler(sig)
    return recycler.reason if recycler is not None and not requested else None
