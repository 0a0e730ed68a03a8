"""Scripts the interrupt tests run as real programs (a Ctrl-C reaches a whole process group,
a SIGKILL leaves no chance to clean up): each prints one line `ready PID TEMPLATE WORKER...`
once its pool serves, then blocks a worker with a routine, which prints `blocking PID` (the
workers share the script's stdout)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

BLOCKING = """\
import asyncio
import os
import time

import wool


@wool.routine
async def block():
    print("blocking", os.getpid(), flush=True)
    time.sleep(60)  # blocks the worker's event loop: it answers nothing meanwhile


async def main():
    async with wool.WorkerPool(size={size}) as pool:
        template = pool._template.pid if pool._template is not None else 0
        print("ready", os.getpid(), template, *[w.pid for w in pool.processes], flush=True)
        await block()


asyncio.run(main())
"""


def blocking(size: int = 1, plain: bool = False) -> str:
    """The script; with `plain`, its routine is a plain `def` (it blocks a worker thread, not
    the worker's loop)."""
    script = BLOCKING.format(size=size)
    return script.replace("async def block():", "def block():") if plain else script


async def wait_gone(pid: int, timeout: float = 30.0) -> None:
    """Wait until process `pid` (not a child of ours) has exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(pidfd, lambda: gone.done() or gone.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await gone
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def listing(runtime_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(runtime_dir)) for p in runtime_dir.rglob("*") if p.is_file() or p.is_socket())


class Script:
    """A script in its own process group, its stderr read line by line on the loop."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        self.stderr: list[str] = []

    async def start(self) -> list[int]:
        loop = asyncio.get_running_loop()
        self._out = asyncio.StreamReader()
        self._err = asyncio.StreamReader()
        self._transports = []
        for reader, pipe in ((self._out, self.proc.stdout), (self._err, self.proc.stderr)):
            protocol = asyncio.StreamReaderProtocol(reader)
            self._transports.append((await loop.connect_read_pipe(lambda p=protocol: p, pipe))[0])  # type: ignore[misc]
        fields = (await asyncio.wait_for(self._out.readline(), 60)).decode().split()
        assert fields and fields[0] == "ready", (fields, await self._err.read())
        assert (await asyncio.wait_for(self._out.readline(), 60)).split()[0] == b"blocking"
        return [int(f) for f in fields[1:] if int(f)]

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    async def line(self) -> str:
        line = (await asyncio.wait_for(self._err.readline(), 30)).decode()
        self.stderr.append(line)
        return line

    async def finish(self) -> tuple[int, str]:
        rest = (await asyncio.wait_for(self._err.read(), 60)).decode()
        self.stderr.append(rest)
        code = await asyncio.to_thread(self.proc.wait, 30)
        return code, "".join(self.stderr)

    def close(self) -> None:
        for transport in getattr(self, "_transports", []):
            transport.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
