"""Everything a comparison talks to, opened once: wool's pool, the loop servers (a direct and
a multiplexed client to each), the raw server, and a ProcessPoolExecutor.

They stay open side by side, idle between workloads, so that repetitions can alternate
between them (see `results.interleave`). ProcessPoolExecutor uses `spawn`: this process owns
a zmq context with I/O threads, which must never be forked, and spawned processes are also
what wool starts, so start-up compares like with like.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import wool

from . import functions
from .baseline_client import DirectClient, LoopClient, RawClient, ServerProcess, start_servers
from .floor import Floors


def process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def pool_pids(executor: ProcessPoolExecutor) -> list[int]:
    """The executor's worker pids (a private attribute: the executor offers no public one)."""
    return list(getattr(executor, "_processes", None) or {})


class Sides:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._stack = AsyncExitStack()
        self.pool: wool.WorkerPool
        self.loop_servers: list[ServerProcess] = []
        self.direct: list[DirectClient] = []
        self.piped: list[LoopClient] = []
        self.raw_server: ServerProcess
        self.raw: RawClient
        self.ppe: ProcessPoolExecutor
        self.floors: Floors
        self._next_direct = itertools.cycle(range(workers))
        self._next_piped = itertools.cycle(range(workers))

    async def __aenter__(self) -> Sides:
        stack = self._stack
        try:
            self.pool = await stack.enter_async_context(wool.WorkerPool(size=self.workers))
            self.loop_servers = start_servers("loop", self.workers)
            for server in self.loop_servers:
                stack.callback(server.stop)
            self.raw_server = start_servers("raw", 1)[0]
            stack.callback(self.raw_server.stop)
            for server in self.loop_servers:
                self.direct.append(DirectClient(server.endpoint()))
                stack.callback(self.direct[-1].close)
                self.piped.append(LoopClient(server.endpoint()))
                stack.callback(self.piped[-1].close)
            self.raw = RawClient(self.raw_server.endpoint())
            stack.callback(self.raw.close)
            self.floors = Floors()
            stack.callback(self.floors.close)
            self.ppe = process_pool(self.workers)
            stack.callback(self.ppe.shutdown, cancel_futures=True)
            # Its workers start lazily: start them now, as wool's and the loop's are.
            await asyncio.gather(*(self.ppe_call(functions.add_sync, i, 1) for i in range(self.workers)))
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()

    # -- calls, spread round-robin over the two workers of each side, as wool spreads them --

    async def direct_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.direct[next(self._next_direct)].call(fn, *args)

    async def loop_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.piped[next(self._next_piped)].call(fn, *args)

    async def ppe_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.ppe, fn, *args)

    # -- the processes on the far side of each comparison --

    @property
    def wool_pids(self) -> list[int]:
        return [p.pid for p in self.pool.processes if p.pid is not None]

    @property
    def loop_pids(self) -> list[int]:
        return [s.pid for s in self.loop_servers]

    @property
    def ppe_pids(self) -> list[int]:
        return pool_pids(self.ppe)
