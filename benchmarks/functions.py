"""The functions the baselines run: `async def`s for the hand-written loop's server (it
awaits them), plain functions for ProcessPoolExecutor. Importable by reference, so neither the
loop server nor a pool worker needs them pickled by value, as wool's routines aren't."""

from __future__ import annotations

import time


async def add(x: int, y: int) -> int:
    return x + y


async def echo(data: bytes) -> bytes:
    return data


async def fanout(n: int, peer: str) -> int:
    """Runs in a loop server: `n` pipelined `add` calls to the peer server at `peer`, summed.
    The serving loop is blocked awaiting this very function, so it cannot call itself; its
    peer is the other server."""
    from .baseline_client import peer_client

    client = await peer_client(peer)
    return sum(await client.gather([(add, (i, 1)) for i in range(n)]))


async def spin(ms: float) -> None:
    """Hold the CPU for `ms` milliseconds (a fine-grained task), as `spin_sync` does."""
    spin_sync(ms)


def add_sync(x: int, y: int) -> int:
    return x + y


def echo_sync(data: bytes) -> bytes:
    return data


def spin_sync(ms: float) -> None:
    """Hold the CPU for `ms` milliseconds (a fine-grained task)."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass
