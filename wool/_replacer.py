"""A pool's replacements of its recycled and killed workers.

Theory of operation. A spawned worker tells its pool, on the pipe of its handshake, when it
will recycle soon (`announce`, at 90 % of `recycle_after`) and when it stops taking calls
(`recycle`: above its memory limit, or at `recycle_after`); see `wool.worker._recycle`. On
the first of these the pool starts a replacement from the same config (forked from the
template), adds it to the mesh and waits for its connection, while the old worker finishes
its running calls, withdraws and exits by itself. Every `SAMPLE_INTERVAL` the pool also reads
the RSS of each of its workers; one above `HARD_FACTOR` times the memory limit is killed:
first its calls in flight here fail with `WorkerLost` naming the limit and the RSS seen
(calls from other processes learn of the loss from their connection), then it is
SIGKILLed and replaced. A worker that dies otherwise (killed, crashed: a non-zero exit) is replaced too, with
a warning: a pool that recycles keeps its size, as Celery's and Dask's do. A replacement that
fails to start is logged, and not tried again until the next notice or death.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

from ._memory import HARD_FACTOR, SAMPLE_INTERVAL, rss, show_bytes
from .caller import Mesh
from .discovery import Discovery
from .worker import Template, WorkerProcess, remove_socket

log = logging.getLogger("wool.pool")

START_ATTEMPTS = 3  # for one replacement (a start can fail for a passing reason: a kill, a full disk)


class Replacer:
    """Keeps `processes` (the pool's own list, changed in place) at its size as workers
    recycle or are killed for memory."""

    def __init__(
        self,
        processes: list[WorkerProcess],
        mesh: Mesh,
        namespace: Discovery,
        template: Template | None,
        *,
        memory_limit: int | None,
        start_timeout: float,
    ) -> None:
        self._processes = processes
        self._mesh = mesh
        self._namespace = namespace
        self._template = template
        self._memory_limit = memory_limit
        self._start_timeout = start_timeout
        self._replaced: set[int] = set()  # id() of processes whose replacement was started
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sampler: asyncio.Task[None] | None = None
        self.recycled = 0  # workers that exited to be replaced
        self.killed = 0  # workers killed for memory
        self._closing = False

    def start(self) -> None:
        self._mesh.replacing = True
        for process in list(self._processes):
            self._follow(process)
        if self._memory_limit is not None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample())

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _follow(self, process: WorkerProcess) -> None:
        self._spawn_task(self._read_notices(process))

    async def _read_notices(self, process: WorkerProcess) -> None:
        while (notice := await process.notice()) is not None:
            if notice.get("event") in ("announce", "recycle"):
                if notice.get("event") == "recycle":
                    log.info("worker pid %s is recycling: %r", process.pid, notice.get("reason"))
                    if process.info is not None:
                        # No new call from here: one sent after it closed its socket would
                        # be lost (its calls in flight still finish).
                        self._mesh.retire(process.info.id)
                self._replace(process)
        code = await process.wait()
        if self._closing:
            return
        if code != 0 and id(process) not in self._replaced and process in self._processes:
            log.warning("worker pid %s exited with code %s; starting a replacement", process.pid, code)
            self._replace(process)
        await self._gone(process, code)

    def _replace(self, process: WorkerProcess) -> None:
        if id(process) in self._replaced:
            return
        self._replaced.add(id(process))
        config = process.config
        if config.metrics_port:  # the old worker holds that port until it exits
            config = dataclasses.replace(config, metrics_port=0)
        fresh = WorkerProcess(config, self._template)
        self._processes.append(fresh)  # so that a pool closing meanwhile stops it too
        self._spawn_task(self._start(fresh, process))

    async def _start(self, fresh: WorkerProcess, old: WorkerProcess) -> None:
        self._mesh.expect(+1)
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    info = await fresh.start(self._start_timeout)
                except Exception as e:
                    log.warning("could not start a replacement for worker pid %s (attempt %d): %s", old.pid, attempt, e)
                    index = self._processes.index(fresh) if fresh in self._processes else None
                    fresh = WorkerProcess(fresh.config, self._template)
                    if index is None:
                        return  # the pool is closing
                    self._processes[index] = fresh
                else:
                    self._mesh.add(info, connect=True)
                    self._follow(fresh)
                    return
            with contextlib.suppress(ValueError):
                self._processes.remove(fresh)
            self._replaced.discard(id(old))
        finally:
            self._mesh.expect(-1)

    async def _gone(self, process: WorkerProcess, code: int | None) -> None:
        """`process` exited: forget it; clean up after it if it could not."""
        if id(process) not in self._replaced:
            return  # not a recycle: the pool's exit handles it as before
        self._replaced.discard(id(process))
        with contextlib.suppress(ValueError):
            self._processes.remove(process)
        self.recycled += 1
        if process.info is not None:
            self._mesh.retire(process.info.id)
            if code != 0:
                with contextlib.suppress(Exception):
                    remove_socket(process.info.endpoint)
                with contextlib.suppress(Exception):
                    await self._namespace.withdraw(process.info)

    async def _sample(self) -> None:
        assert self._memory_limit is not None
        hard = self._memory_limit * HARD_FACTOR
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            for process in list(self._processes):
                if process.pid is None or process.returncode is not None or process.info is None:
                    continue
                seen = rss(process.pid)
                if seen is not None and seen > hard:
                    self._kill(process, seen)

    def _kill(self, process: WorkerProcess, seen: int) -> None:
        assert process.info is not None and self._memory_limit is not None
        reason = (
            f"worker {process.info.id!r} (pid {process.pid}) was killed by its pool: its RSS of {show_bytes(seen)} "
            f"exceeded {HARD_FACTOR:g} x its memory limit of {show_bytes(self._memory_limit)} "
            "(WorkerPool(memory_limit=...))"
        )
        log.warning("%s; starting a replacement", reason)
        self.killed += 1
        self._mesh.lose(process.info.id, reason)
        self._replace(process)
        self._spawn_task(process.kill())

    async def close(self) -> None:
        """Stop following the workers (the pool stops them all next)."""
        self._closing = True
        self._mesh.replacing = False
        tasks = [t for t in (self._sampler, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
