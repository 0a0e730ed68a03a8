"""wool from synchronous code: a script with no asyncio in it (see README "From synchronous code")."""

import os

import wool

PRICES = {"apple": 1.5, "fig": 0.75, "kiwi": 2.0}


@wool.routine
async def price(item: str) -> float:
    if item not in PRICES:
        raise KeyError(f"no price for {item!r}")
    return PRICES[item]


@wool.routine
async def basket(items: list[str]) -> float:
    return sum([await price(item) for item in items])  # nested calls, from the worker


@wool.routine
async def where() -> int:
    return os.getpid()


with wool.WorkerPool(size=2) as pool:
    print("apple:", pool.run(price("apple")))
    print("basket:", pool.run(basket(["apple", "fig", "kiwi"])))
    for item, value in zip(PRICES, pool.map(price, PRICES), strict=True):
        print(f"{item}: {value:.2f}")
    print("ran in another process:", pool.run(where()) != os.getpid())
    try:
        pool.run(price("durian"))
    except KeyError as error:
        print("error:", error)
print("pool closed")
