import asyncio
import string

import wool

charset = string.ascii_lowercase


@wool.routine
async def search(query: str):
    chars = sorted(charset)
    lo, hi = 0, len(chars) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        hint = yield chars[mid]
        if hint == "higher":
            lo = mid + 1
        elif hint == "lower":
            hi = mid - 1
        else:
            return


async def main():
    async with wool.WorkerPool(size=4):
        stream = search("z")
        guess = await anext(stream)
        while True:
            print("guess:", guess)
            if guess == "z":
                await stream.aclose()
                break
            hint = "higher" if guess < "z" else "lower"
            guess = await stream.asend(hint)


asyncio.run(main())
