"""`python -m wool.workers --watch`, seen as a person sees it: run on a pseudo-terminal that is
its controlling terminal, its screen read back, stopped with Ctrl-C typed on that terminal."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

import wool
from tests import routines
from tests.helpers import REPO, Observer, read_line, wait_exit
from wool import protocol as p
from wool._watch import Watch, _Seen, watch

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

COLUMNS = ("ID", "ENDPOINT", "PID", "HOST", "STATE", "CALLS/S", "CALLS", "QUEUED", "DONE", "MAX")
CLEAR = "\x1b[H\x1b[J"


class Terminal:
    """The master side of a pty: everything the program wrote, read on the loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the program closed the terminal (it exited)
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.fd)
        self.text += data.decode(errors="replace")
        self._changed.set()

    def screens(self) -> list[str]:
        """Every complete redraw so far."""
        parts = self.text.split(CLEAR)[1:]
        return [s for s in parts[:-1]] + ([parts[-1]] if parts and parts[-1].endswith("\n") else [])

    async def wait_screen(self, predicate: Callable[[dict[str, dict[str, str]]], bool], timeout: float = 20) -> str:
        """Wait for a redraw whose rows (by worker id) satisfy `predicate`; return it."""
        async with asyncio.timeout(timeout):
            while True:
                for screen in reversed(self.screens()):
                    if predicate(rows(screen)):
                        return screen
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


def rows(screen: str) -> dict[str, dict[str, str]]:
    lines = screen.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["ID", "ENDPOINT"])
    except StopIteration:
        return {}
    return {
        cells[0]: dict(zip(COLUMNS, cells, strict=True))
        for line in lines[start + 1 :]
        if len(cells := line.split()) == len(COLUMNS)
    }


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs util-linux setsid to give the program a controlling terminal")
async def test_watch_redraws_in_place_as_calls_run_and_stops_on_ctrl_c() -> None:
    namespace = wool.LocalDiscovery("watched")
    async with Observer() as observer, wool.WorkerPool(size=1, discovery=namespace) as pool:
        (worker,) = pool.workers
        short = worker.id[:12]
        master, slave = pty.openpty()
        # setsid --ctty: a session of its own whose controlling terminal is the pty, as a shell gives.
        proc = subprocess.Popen(
            ["setsid", "--ctty", "--wait", sys.executable, "-m", "wool.workers", "--discovery", "local:watched", "--watch"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO), TERM="xterm"),
        )
        os.close(slave)
        terminal = Terminal(master)
        try:
            first = await terminal.wait_screen(lambda r: short in r and r[short]["STATE"] == "ok")
            assert first.startswith("wool workers in local:watched at ")
            assert rows(first)[short]["PID"] == str(worker.pid) and rows(first)[short]["CALLS"] == "0"
            for i in range(5):
                await routines.add(i, 1)
            await terminal.wait_screen(lambda r: short in r and r[short]["DONE"] == "5")
            held = asyncio.create_task(routines.wait_at(observer.address, "g"))
            await observer.wait_for("at g")
            await terminal.wait_screen(lambda r: short in r and r[short]["CALLS"] == "1")
            observer.open("g")
            await held
            # The rate: 6 calls since the watch began, shown as calls per second once computed.
            await terminal.wait_screen(lambda r: short in r and r[short]["DONE"] == "6" and r[short]["CALLS"] == "0")
            os.write(master, b"\x03")  # Ctrl-C
            assert await wait_exit(proc, 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            terminal.close()
    # Redrawn in place: every refresh starts by homing the cursor and clearing the screen.
    assert terminal.text.count(CLEAR) >= 3
    assert "Traceback" not in terminal.text


async def test_watch_shows_a_worker_that_died_as_lost() -> None:
    namespace = wool.LocalDiscovery("watched-loss")
    async with wool.WorkerPool(size=2, discovery=namespace) as pool:
        victim, survivor = pool.processes
        assert victim.info is not None and survivor.info is not None
        proc = subprocess.Popen(
            [sys.executable, "-m", "wool.workers", "--discovery", "local:watched-loss", "--watch", "--json", "--interval", "0.2"],
            stdout=subprocess.PIPE,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        assert proc.stdout is not None
        try:
            states: dict[str, str] = {}
            while states != {victim.info.id: "ok", survivor.info.id: "ok"}:
                line = await read_line(proc.stdout, 20)
                states = {w["id"]: w["state"] for w in json.loads(line)["workers"]}
            await victim.kill()
            while states.get(victim.info.id) != "lost":
                refresh = json.loads(await read_line(proc.stdout, 20))
                states = {w["id"]: w["state"] for w in refresh["workers"]}
            assert states[survivor.info.id] == "ok"
            assert {"time", "workers"} <= set(refresh)
            proc.send_signal(signal.SIGINT)
            assert await wait_exit(proc, 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def test_watch_refuses_a_bad_interval() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wool.workers", "--discovery", "local:x", "--watch", "--interval", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "--interval must be positive" in out.stderr


def test_rates_come_from_two_answers_in_a_row() -> None:
    now = [100.0]
    watch = Watch(1.0, clock=lambda: now[0])
    info = wool.WorkerInfo("w" * 32, "tcp://127.0.0.1:9", 1)
    watch._seen[info.id] = seen = _Seen(info)
    watch._answered(seen, p.Pong(1, info.id, served=10), now[0])
    assert watch.rows()[0]["calls_per_s"] is None
    now[0] += 2.0
    watch._answered(seen, p.Pong(2, info.id, 3, 1, served=50), now[0])
    (row,) = watch.rows()
    assert (row["state"], row["calls_per_s"], row["calls"], row["queued"], row["served"]) == ("ok", 20.0, 3, 1, 50)
    silent = wool.WorkerInfo("s" * 32, "tcp://127.0.0.1:10", 2)
    watch._seen[silent.id] = _Seen(silent)  # listed, never answered
    assert {r["id"]: r["state"] for r in watch.rows()} == {info.id: "ok", silent.id: "unreachable"}
    del watch._seen[silent.id]
    watch.update([])
    assert watch.rows()[0]["state"] == "lost"
    now[0] += 61
    watch.update([])
    assert watch.rows() == []


class FlakyDiscovery:
    """Fails its first listing, lists nobody after; the third listing types Ctrl-C."""

    def __init__(self) -> None:
        self.listings = 0

    async def workers(self) -> list[wool.WorkerInfo]:
        self.listings += 1
        if self.listings == 1:
            raise wool.DiscoveryError("the registry is being rewritten")
        if self.listings == 3:
            signal.raise_signal(signal.SIGINT)  # the watch's own handler takes it
        return []


async def test_watch_shows_a_failed_listing_and_goes_on() -> None:
    out = io.StringIO()
    await watch(FlakyDiscovery(), "local:flaky", out, interval=0.01)  # type: ignore[arg-type]
    refreshes = out.getvalue().split("\n\n")
    assert "discovery failed: DiscoveryError: the registry is being rewritten" in refreshes[0]
    assert "no workers in local:flaky" in refreshes[1]
    assert CLEAR not in out.getvalue()  # not a terminal: refreshes follow each other


async def test_watch_escapes_what_a_forged_registry_record_carries() -> None:
    """A registry entry whose host retitles the terminal, clears it and forges a row: the
    watch prints it escaped, as the one-shot table does, never raw."""
    host = "box\x1b]0;owned\x07\x1b[2J\nFORGED  tcp://127.0.0.1:1  1  box  ok"
    forged = wool.WorkerInfo("f" * 12 + "\x1b[31m", "tcp://127.0.0.1:9", os.getpid(), host)  # nobody listens there
    namespace = wool.LocalDiscovery("watched-forged")
    await namespace.publish(forged)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wool.workers", "--discovery", "local:watched-forged", "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.stdout is not None
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)
    try:
        lines: list[str] = []
        async with asyncio.timeout(20):
            while not lines or "ffffffffffff" not in lines[-1]:
                lines.append((await reader.readline()).decode())
        proc.send_signal(signal.SIGINT)
        assert await wait_exit(proc, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        transport.close()
        await namespace.withdraw(forged)
    row = lines[-1]
    assert repr(host) in row and "\x1b" not in row and "\x07" not in row
    assert not any(line.startswith("FORGED") for line in lines)
    assert "\x1b" not in "".join(lines)
