"""The probes behind static and DNS discovery: a watching process holds no connection to the
workers it found, asks a found worker again only every `recheck_interval` or when something
suggests a change (a `workers()` call, as the mesh makes when it loses a worker), and still
sees a restart as removed then added and a killed worker leave."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import routines
import zmq
from helpers import CliWorker, Observer, logged_to

import wool
import wool._transport
import wool.caller
from wool._keys import generate_directory
from wool.discovery import DiscoveryEvent, DnsDiscovery, StaticDiscovery, _probe
from wool.discovery._probe import Schedule

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

# Only what a test does asks again: nothing is due on its own within a test.
ON_DEMAND = {"poll_interval": 3600, "recheck_interval": 3600, "timeout": 5}


def cli_worker(*args: str) -> CliWorker:
    """A worker on its private ipc:// socket whose own static list names nobody."""
    nobody = f"ipc://{os.environ['WOOL_RUNTIME_DIR']}/nobody-{uuid.uuid4().hex[:8]}.sock"
    return CliWorker("--discovery", f"static:{nobody}", *args)


async def next_event(watch: AsyncIterator[DiscoveryEvent], timeout: float = 10) -> DiscoveryEvent:
    return await asyncio.wait_for(anext(watch), timeout)


def open_sockets() -> int:
    """The sockets this process holds open (TCP, Unix: ZeroMQ's connections; its own
    mailboxes are eventfds, not sockets)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # the directory's own descriptor, closed by now
    return count


# -- when an endpoint is asked (pure) ----------------------------------------------------------


def test_new_endpoints_are_due_at_once_then_by_what_was_found() -> None:
    schedule = Schedule(poll_interval=1, recheck_interval=30)
    schedule.track(["a", "b"], now=100)
    assert schedule.due(100) == ["a", "b"]
    schedule.asked("a", found=True, now=100)
    schedule.asked("b", found=False, now=100)
    assert schedule.due(100.5) == []
    assert schedule.next_at() == 101
    assert schedule.due(101) == ["b"]
    assert schedule.due(130) == ["a", "b"]


def test_tracking_keeps_the_times_of_kept_endpoints_and_asking_all_makes_all_due() -> None:
    schedule = Schedule(poll_interval=1, recheck_interval=30)
    schedule.track(["a", "b"], now=0)
    schedule.asked("a", found=True, now=0)
    schedule.asked("b", found=True, now=0)
    schedule.track(["a", "c"], now=5)  # b is no longer listed; c is new
    assert schedule.due(5) == ["c"]
    schedule.asked("b", found=True, now=5)  # an answer for an endpoint dropped meanwhile
    assert schedule.due(40) == ["a", "c"]
    schedule.all_due(6)
    assert schedule.due(6) == ["a", "c"]
    assert Schedule(1, 30).next_at() is None


def test_recheck_interval_defaults_to_thirty_poll_intervals_and_is_checked() -> None:
    assert StaticDiscovery(["tcp://h:1"], poll_interval=0.5).recheck_interval == 15
    assert StaticDiscovery(["tcp://h:1"], recheck_interval=2).recheck_interval == 2
    assert DnsDiscovery("w.example", 7001).recheck_interval == 30
    with pytest.raises(ValueError, match="recheck_interval"):
        StaticDiscovery(["tcp://h:1"], recheck_interval=0)
    with pytest.raises(ValueError, match="recheck_interval"):
        DnsDiscovery("w.example", 7001, recheck_interval=-1)
    copy = pickle.loads(pickle.dumps(StaticDiscovery(["tcp://h:1"], recheck_interval=7)))
    assert copy.recheck_interval == 7
    assert StaticDiscovery(["tcp://h:1"], recheck_interval=7).with_keys(None).recheck_interval == 7


# -- against real workers ----------------------------------------------------------------------


async def test_a_watch_holds_no_connection_to_the_workers_it_found() -> None:
    async with cli_worker() as a, cli_worker() as b, cli_worker() as c:
        before = open_sockets()
        discovery = StaticDiscovery([a.endpoint, b.endpoint, c.endpoint], **ON_DEMAND)
        watch = discovery.watch()
        try:
            found = {(await next_event(watch)).worker.id for _ in range(3)}
            assert found == {a.id, b.id, c.id}
            # The probes are closed; libzmq's I/O thread ends their connections just after.
            async with asyncio.timeout(10):
                while open_sockets() > before:
                    await asyncio.sleep(0.01)
            # Still watching, with nothing open: asked again, it sees a worker leave.
            c.signal(signal.SIGKILL)
            await c.wait()
            assert [w.id for w in await discovery.workers()] == sorted([a.id, b.id])
            removed = await next_event(watch)
            assert (removed.kind, removed.worker.id) == ("removed", c.id)
        finally:
            await watch.aclose()  # type: ignore[attr-defined]


async def test_asking_an_equal_discovery_makes_a_watch_see_a_restart_at_once() -> None:
    async with cli_worker() as first:
        discovery = StaticDiscovery([first.endpoint], **ON_DEMAND)
        watch = discovery.watch()
        try:
            added = await next_event(watch)
            assert (added.kind, added.worker.id) == ("added", first.id)
            first.signal(signal.SIGKILL)
            await first.wait()
            copy = pickle.loads(pickle.dumps(discovery))  # equal, not the same object
            assert await copy.workers() == []
            assert await next_event(watch) == DiscoveryEvent("removed", added.worker)
            async with cli_worker("--bind", first.endpoint) as second:
                assert [w.id for w in await copy.workers()] == [second.id]
                again = await next_event(watch)
                assert (again.kind, again.worker.id, again.worker.endpoint) == ("added", second.id, first.endpoint)
        finally:
            await watch.aclose()  # type: ignore[attr-defined]


async def test_a_killed_worker_leaves_at_the_next_recheck() -> None:
    async with cli_worker() as a, cli_worker() as b:
        discovery = StaticDiscovery([a.endpoint, b.endpoint], poll_interval=0.05, recheck_interval=0.1, timeout=5)
        watch = discovery.watch()
        try:
            added = {(await next_event(watch)).worker.id for _ in range(2)}
            assert added == {a.id, b.id}
            a.signal(signal.SIGKILL)
            await a.wait()
            removed = await next_event(watch)
            assert (removed.kind, removed.worker.id) == ("removed", a.id)
        finally:
            await watch.aclose()  # type: ignore[attr-defined]


async def test_a_pool_that_loses_a_worker_tells_the_watches_of_its_discovery() -> None:
    """The mesh asks its discovery for its workers when a connection is lost: a watch of the
    same list in the process learns of it then, not at the next recheck (an hour here)."""
    async with cli_worker() as a, cli_worker() as b:
        discovery = StaticDiscovery([a.endpoint, b.endpoint], **ON_DEMAND)
        watch = discovery.watch()
        try:
            assert {(await next_event(watch)).worker.id for _ in range(2)} == {a.id, b.id}
            async with wool.WorkerPool(discovery=discovery) as pool:
                await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=10)
                async with asyncio.timeout(10):
                    while a.pid not in {await routines.pid() for _ in range(4)}:
                        pass  # until the pool has a connection to `a` open
                a.signal(signal.SIGKILL)
                await a.wait()
                removed = await next_event(watch)
                assert (removed.kind, removed.worker.id) == ("removed", a.id)
                assert await routines.pid() == b.pid
        finally:
            await watch.aclose()  # type: ignore[attr-defined]


async def test_a_busy_worker_keeps_its_place() -> None:
    """A worker whose event loop is blocked completes its handshake (libzmq's thread does)
    but does not answer the ping: busy is not dead. Asked at once (a `workers()` call), the
    watch reports only the worker that did die."""
    async with cli_worker() as a, cli_worker() as b, Observer() as observer:
        discovery = StaticDiscovery([a.endpoint, b.endpoint], **{**ON_DEMAND, "timeout": 0.5})
        watch = discovery.watch()
        try:
            assert {(await next_event(watch)).worker.id for _ in range(2)} == {a.id, b.id}
            async with wool.WorkerPool(discovery=StaticDiscovery([a.endpoint])) as pool:
                await pool.wait_for_workers(timeout=10)
                hogging = asyncio.ensure_future(routines.hog(observer.address, 30))
                await observer.wait_for("hogging")
                b.signal(signal.SIGKILL)
                await b.wait()
                await discovery.workers()  # the watch asks both again now
                # Removals come in the list's order: a removed `a` would come first.
                removed = await next_event(watch)
                assert (removed.kind, removed.worker.id) == ("removed", b.id)
                a.signal(signal.SIGKILL)
                with pytest.raises(wool.WorkerLost):
                    await hogging
        finally:
            await watch.aclose()  # type: ignore[attr-defined]


async def test_a_worker_refusing_this_process_key_is_left_out_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Asked again and again, an endpoint whose worker refuses this process's key is absent
    and warned about once; a worker that accepts it, at another listed endpoint, is found."""
    refusing_keys = generate_directory(tmp_path / "refusing")  # trusts only itself
    accepting_keys = generate_directory(tmp_path / "accepting")
    caller = wool.Keys.generate([refusing_keys.public, accepting_keys.public])
    (tmp_path / "accepting" / "trusted" / "caller.pub").write_text(caller.public + "\n")
    later = f"ipc://{os.environ['WOOL_RUNTIME_DIR']}/later-{uuid.uuid4().hex[:8]}.sock"
    with caplog.at_level(logging.WARNING, logger="wool.discovery"):
        async with cli_worker("--keys", str(tmp_path / "refusing")) as refusing:

            def refusals() -> list[str]:
                return [r.getMessage() for r in caplog.records if refusing.endpoint in r.getMessage()]

            warned = asyncio.Event()
            loop = asyncio.get_running_loop()

            class Warned(logging.Handler):
                def emit(self, record: logging.LogRecord) -> None:
                    if refusing.endpoint in record.getMessage():
                        loop.call_soon_threadsafe(warned.set)

            discovery = StaticDiscovery(
                [refusing.endpoint, later], poll_interval=0.05, recheck_interval=3600, timeout=5, keys=caller
            )
            watch = discovery.watch()
            try:
                pending = asyncio.ensure_future(next_event(watch))
                with logged_to(Warned(), "wool.discovery"):
                    async with asyncio.timeout(10):
                        await warned.wait()
                # Found in a later round than the one that warned: the refusing worker was
                # asked again meanwhile.
                async with cli_worker("--bind", later, "--keys", str(tmp_path / "accepting")) as accepting:
                    added = await pending
                    assert (added.kind, added.worker.id, added.worker.public_key) == (
                        "added",
                        accepting.id,
                        accepting_keys.public,
                    )
            finally:
                await watch.aclose()  # type: ignore[attr-defined]
            (warning,) = refusals()
            assert "leaving it out" in warning


async def test_a_worker_restarted_with_another_trusted_key_is_found(tmp_path: Path) -> None:
    """A probe first tries the key the endpoint's worker proved last time; when the worker
    there now holds another key this process trusts, that fails, and the next probe tries
    them all again."""
    first_keys = generate_directory(tmp_path / "first")
    second_keys = generate_directory(tmp_path / "second")
    caller = wool.Keys.generate([first_keys.public, second_keys.public])
    for name in ("first", "second"):
        (tmp_path / name / "trusted" / "caller.pub").write_text(caller.public + "\n")
    endpoint = f"ipc://{os.environ['WOOL_RUNTIME_DIR']}/restarted-{uuid.uuid4().hex[:8]}.sock"
    discovery = StaticDiscovery([endpoint], **ON_DEMAND, keys=caller)
    watch = discovery.watch()
    try:
        async with cli_worker("--bind", endpoint, "--keys", str(tmp_path / "first")) as first:
            pending = asyncio.ensure_future(next_event(watch))
            assert [w.id for w in await discovery.workers()] == [first.id]
            added = await pending
            assert (added.kind, added.worker.id, added.worker.public_key) == ("added", first.id, first_keys.public)
            first.signal(signal.SIGTERM)
            assert await first.wait() == 0
        async with cli_worker("--bind", endpoint, "--keys", str(tmp_path / "second")) as second:
            assert [w.id for w in await discovery.workers()] == [second.id]
            assert await next_event(watch) == DiscoveryEvent("removed", added.worker)  # asked with the first key
            assert [w.id for w in await discovery.workers()] == [second.id]
            again = await next_event(watch)
            assert (again.kind, again.worker.id, again.worker.public_key) == ("added", second.id, second_keys.public)
    finally:
        await watch.aclose()  # type: ignore[attr-defined]


# -- what probing many endpoints costs (a large DNS answer or static list) ----------------------


class _Counting:
    """Counts the probe connections open at once (a stand-in for `_probe.Connection`)."""

    def __init__(self) -> None:
        self.open = self.peak = self.made = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        counter = self

        class Counted(wool.caller.Connection):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, **kwargs)
                counter.made += 1
                counter.open += 1
                counter.peak = max(counter.peak, counter.open)
                self._counted = True

            def close(self) -> None:
                if getattr(self, "_counted", False):
                    self._counted = False
                    counter.open -= 1
                super().close()

        monkeypatch.setattr(_probe, "Connection", Counted)


async def test_probing_many_endpoints_with_many_keys_holds_a_bounded_number_of_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 endpoints where nothing listens, asked with 9 candidate keys each: at most
    `PROBES_AT_ONCE * KEYS_AT_ONCE` connections are open at once (not 1,800, past ZeroMQ's
    1,023 sockets per context), every endpoint is still asked, and the refusals are one
    warning, not one per endpoint."""
    keys = wool.Keys.generate([wool.Keys.generate().public for _ in range(8)])
    runtime = os.environ["WOOL_RUNTIME_DIR"]
    endpoints = [f"ipc://{runtime}/dead-{uuid.uuid4().hex[:8]}-{i}.sock" for i in range(200)]
    counting = _Counting()
    counting.install(monkeypatch)
    handler = _Collect()
    with logged_to(handler, "wool.discovery"):
        async with asyncio.timeout(30):
            assert await StaticDiscovery(endpoints, **ON_DEMAND, keys=keys).workers() == []
    assert counting.made >= len(endpoints)
    assert 0 < counting.peak <= _probe.PROBES_AT_ONCE * _probe.KEYS_AT_ONCE
    assert counting.open == 0
    refusals = [m for m in handler.messages if "accepts connections" in m]
    assert len(refusals) == 1 and "nothing at 200 endpoints" in refusals[0], handler.messages


async def test_a_process_out_of_zeromq_sockets_gets_a_wool_warning_not_a_zmq_error(tmp_path: Path) -> None:
    """With the process's ZeroMQ context full (1,023 sockets), a probe cannot open its
    socket: `workers()` finds nobody and says why, and no `ZMQError` reaches the caller."""
    ctx = wool._transport.context()
    filler: list[zmq.Socket[Any]] = []
    handler = _Collect()
    try:
        while True:
            try:
                filler.append(ctx.socket(zmq.PAIR))
            except zmq.ZMQError:
                break
        endpoint = f"ipc://{os.environ['WOOL_RUNTIME_DIR']}/full-{uuid.uuid4().hex[:8]}.sock"
        with logged_to(handler, "wool.discovery"):
            async with asyncio.timeout(10):
                assert await StaticDiscovery([endpoint], **ON_DEMAND).workers() == []
    finally:
        for sock in filler:
            sock.close(linger=0)
    assert any("cannot probe" in m and "cannot open a socket" in m for m in handler.messages), handler.messages


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.changed.set()

    async def wait_for(self, text: str) -> str:
        while not any(text in m for m in self.messages):
            self.changed.clear()
            await self.changed.wait()
        return next(m for m in self.messages if text in m)


def test_a_round_asks_the_endpoints_due_longest_first_and_at_most_its_limit() -> None:
    schedule = Schedule(poll_interval=1, recheck_interval=30)
    schedule.track(["a", "b", "c", "d"], now=0)
    schedule.asked("a", found=False, now=0)  # due again at 1
    schedule.asked("b", found=True, now=0)  # at 30
    assert schedule.most_overdue(0, 10) == ["c", "d"]
    assert schedule.most_overdue(5, 2) == ["c", "d"]  # due since 0, before a (since 1)
    assert schedule.most_overdue(5, 3) == ["c", "d", "a"]
    assert schedule.most_overdue(5, 0) == []


async def test_a_watch_reports_a_worker_listed_among_300_dead_endpoints_before_asking_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The live worker is listed first: it is reported after the first round of probes, not
    after all 301 endpoints were asked, and the dead ones are one warning for the pass."""
    runtime = os.environ["WOOL_RUNTIME_DIR"]
    live = f"ipc://{runtime}/live-{uuid.uuid4().hex[:8]}.sock"
    dead = [f"ipc://{runtime}/dead-{uuid.uuid4().hex[:8]}-{i}.sock" for i in range(300)]
    counting = _Counting()
    counting.install(monkeypatch)
    handler = _Collect()
    async with cli_worker("--bind", live) as worker:
        watch = StaticDiscovery([live, *dead], **ON_DEMAND).watch()
        try:
            with logged_to(handler, "wool.discovery"):
                async with asyncio.timeout(30):
                    added = await anext(watch)
                    assert (added.kind, added.worker.id) == ("added", worker.id)
                    asked_then = counting.made
                    pending = asyncio.ensure_future(anext(watch))  # the watch goes on with the rest
                    warning = await handler.wait_for("accepts connections")
                    pending.cancel()
                    await asyncio.gather(pending, return_exceptions=True)
        finally:
            await watch.aclose()  # type: ignore[attr-defined]
    assert asked_then <= _probe.ROUND < len(dead)
    assert "nothing at 300 endpoints" in warning
    assert [m for m in handler.messages if "accepts connections" in m] == [warning]
