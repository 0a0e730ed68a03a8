"""Per-worker state: each worker loads reference data once, in its lifespan, and every call
reads it with wool.state(). A lifespan that fails stops the pool from starting, and says why.

    python examples/lifespan.py
"""

import asyncio
import contextlib
import os

import wool


@contextlib.asynccontextmanager
async def reference_data():
    # Entered once per worker, before its first call: open files, sessions, load models here.
    rates = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85}
    yield {"rates": rates, "pid": os.getpid()}
    # Exited after the worker's last call, when the pool closes.


@wool.routine
async def convert(amount: float, currency: str) -> tuple[float, bool]:
    state = wool.state()
    return round(amount * state["rates"][currency], 2), state["pid"] == os.getpid()


@contextlib.asynccontextmanager
async def missing_data():
    raise FileNotFoundError("rates.csv not found")
    yield


async def main():
    async with wool.WorkerPool(size=2, lifespan=reference_data):
        currencies = ["USD", "GBP", "EUR", "USD"]
        results = await asyncio.gather(*(convert(100, c) for c in currencies))
        for currency, (value, _) in zip(currencies, results, strict=True):
            print(f"100 EUR = {value} {currency}")
        print("each call read its own worker's state:", all(own for _, own in results))
    try:
        async with wool.WorkerPool(size=1, lifespan=missing_data):
            pass
    except wool.WorkerStartError as e:
        print(f"the pool did not start: {type(e.__cause__).__name__}: {e.__cause__}")


asyncio.run(main())
