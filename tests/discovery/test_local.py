"""LocalDiscovery specifics: names, file layout, pruning of dead workers, corrupt registries,
and many processes writing one registry at once."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pickle
import random
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from helpers import logged_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wool.discovery import DiscoveryError, DiscoveryEvent, LocalDiscovery, WorkerInfo, _local

REPO = Path(__file__).resolve().parents[2]


def entry(wid: str, pid: int | None = None, host: str = "", *tags: str) -> WorkerInfo:
    return WorkerInfo(wid, f"tcp://127.0.0.1:{5000 + len(wid)}", pid or os.getpid(), host, frozenset(tags))


def registry(runtime_dir: Path) -> Path:
    return runtime_dir / "registry"


def write_raw(runtime_dir: Path, name: str, raw: bytes) -> Path:
    registry(runtime_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    path = registry(runtime_dir) / f"{name}.json"
    path.write_bytes(raw)
    return path


def read_doc(runtime_dir: Path, name: str) -> Any:
    return json.loads((registry(runtime_dir) / f"{name}.json").read_bytes())


async def next_event(it: AsyncIterator[DiscoveryEvent]) -> DiscoveryEvent:
    return await asyncio.wait_for(anext(it), timeout=5)


def child_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class Signal(logging.Handler):
    """Sets an event when the registry logs a warning: a handshake with the watch loop."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.event.set()


@pytest.fixture
def warned() -> Iterator[asyncio.Event]:
    handler = Signal()
    with logged_to(handler, "wool.discovery"):
        yield handler.event


# ---- the object itself


@pytest.mark.parametrize(
    "name, problem",
    [
        ("", "empty"),
        ("a/b", "only contain"),
        ("a b", "only contain"),
        ("é", "only contain"),
        ("a\0", "only contain"),
        (".hidden", "start with"),
        ("..", "start with"),
        ("x" * 101, "longer"),
    ],
)
def test_bad_names_are_refused(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        LocalDiscovery(name)


@pytest.mark.parametrize("name", [None, b"desk", 3, ["desk"]])
def test_non_str_names_are_refused(name: Any) -> None:
    with pytest.raises(TypeError):
        LocalDiscovery(name)


@pytest.mark.parametrize("name", ["a", "Desk.2_x-y", "x" * 100, "a..b"])
def test_good_names_are_accepted(name: str) -> None:
    assert LocalDiscovery(name).name == name


@pytest.mark.parametrize(
    "interval, error", [(0, ValueError), (-1, ValueError), (float("nan"), ValueError), ("1", TypeError), (True, TypeError)]
)
def test_bad_poll_interval_is_refused(interval: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        LocalDiscovery("desk", poll_interval=interval)


def test_identity_is_the_name() -> None:
    a = LocalDiscovery("desk", poll_interval=0.5)
    assert a == LocalDiscovery("desk") and hash(a) == hash(LocalDiscovery("desk"))
    assert a != LocalDiscovery("other") and a != "desk"
    assert repr(a) == "LocalDiscovery('desk')"
    for copy in (pickle.loads(pickle.dumps(a)), cloudpickle.loads(cloudpickle.dumps(a))):
        assert copy == a and copy.poll_interval == 0.5


async def test_directory_is_resolved_where_used(runtime_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = LocalDiscovery("desk")
    await d.publish(entry("w"))
    copy = pickle.loads(pickle.dumps(d))
    monkeypatch.setenv("WOOL_RUNTIME_DIR", str(tmp_path / "elsewhere"))
    assert await copy.workers() == []
    await copy.publish(entry("v"))
    assert (tmp_path / "elsewhere" / "registry" / "desk.json").exists()
    await copy.withdraw(entry("v"))
    monkeypatch.setenv("WOOL_RUNTIME_DIR", str(runtime_dir))
    assert await copy.workers() == [entry("w")]
    await d.withdraw(entry("w"))


# ---- file layout


async def test_file_layout_and_cleanup(runtime_dir: Path) -> None:
    d = LocalDiscovery("desk")
    a, b = entry("a", None, "", "x"), entry("b")
    await d.publish(a)
    await d.publish(b)
    assert read_doc(runtime_dir, "desk") == {"version": 1, "workers": {"a": a.to_dict(), "b": b.to_dict()}}
    assert sorted(p.name for p in registry(runtime_dir).iterdir()) == ["desk.json", "desk.lock"]
    assert stat.S_IMODE(registry(runtime_dir).stat().st_mode) == 0o700
    assert stat.S_IMODE((registry(runtime_dir) / "desk.json").stat().st_mode) & 0o077 == 0
    await d.withdraw(a)
    assert read_doc(runtime_dir, "desk")["workers"] == {"b": b.to_dict()}
    await d.withdraw(b)
    assert list(registry(runtime_dir).iterdir()) == []  # the last withdraw removes both files
    await d.withdraw(b)  # and an absent worker in an absent namespace leaves nothing either
    assert list(registry(runtime_dir).iterdir()) == []


async def test_writer_retries_when_lock_file_is_unlinked_under_it(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between opening and locking, other writers emptied the namespace (unlinking the lock
    file) and started a new one: the lock we got protects nothing, so we must start over."""
    real_flock, calls = fcntl.flock, []
    lock = registry(runtime_dir) / "desk.lock"

    def racing_flock(fd: int, op: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            lock.unlink()
            lock.touch()  # a new inode at the same path
        real_flock(fd, op)

    d = LocalDiscovery("desk")
    await d.publish(entry("a"))
    with monkeypatch.context() as patch:
        patch.setattr(fcntl, "flock", racing_flock)
        await d.publish(entry("b"))
    assert len(calls) == 2
    assert [w.id for w in await d.workers()] == ["a", "b"]
    await d.withdraw(entry("a"))
    await d.withdraw(entry("b"))


async def test_watch_sees_a_change_that_restores_the_file_state(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Coarse mtimes plus inode reuse can make a new file look like the last one read: a
    recently modified file must be re-read even when its (mtime, size, inode) is unchanged."""
    monkeypatch.setattr(_local, "_RACY_NS", 3600 * 10**9)  # "recent" must not depend on speed
    d = LocalDiscovery("desk", poll_interval=0.01)
    before, after = entry("w", None, "", "t1"), entry("w", None, "", "t2")
    await d.publish(before)
    path = registry(runtime_dir) / "desk.json"
    it = d.watch()
    try:
        assert await next_event(it) == DiscoveryEvent("added", before)
        st = path.stat()
        raw = json.dumps({"version": 1, "workers": {"w": after.to_dict()}}, separators=(",", ":")).encode()
        assert len(raw) == st.st_size
        with open(path, "r+b") as f:  # same inode, same size, same mtime: the same state
            f.write(raw)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert _local._stat(path) == _local._state(st)
        assert await next_event(it) == DiscoveryEvent("updated", after)
    finally:
        await it.aclose()
        await d.withdraw(after)


# ---- dead processes


async def test_dead_local_entry_is_hidden_and_pruned(runtime_dir: Path) -> None:
    d = LocalDiscovery("desk")
    live, dead = entry("live"), entry("dead", dead_pid())
    await d.publish(live)
    await d.publish(dead)  # a publisher's entry is written as given
    assert set(read_doc(runtime_dir, "desk")["workers"]) == {"live", "dead"}
    assert await d.workers() == [live]
    assert set(read_doc(runtime_dir, "desk")["workers"]) == {"live"}
    await d.withdraw(live)


async def test_pruning_the_last_entry_removes_the_files(runtime_dir: Path) -> None:
    d = LocalDiscovery("desk")
    await d.publish(entry("dead", dead_pid()))
    assert await d.workers() == []
    assert list(registry(runtime_dir).iterdir()) == []


async def test_remote_entries_are_not_pruned(runtime_dir: Path) -> None:
    d = LocalDiscovery("desk")
    remote = entry("remote", dead_pid(), "some-other-host")
    await d.publish(remote)
    assert await d.workers() == [remote]
    await d.withdraw(remote)


async def test_watch_reports_a_worker_that_dies(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_local, "PID_CHECK_INTERVAL", 0.05)  # no file event tells of a death
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    with reaped(proc):
        d = LocalDiscovery("desk", poll_interval=0.01)
        mortal, other = entry("mortal", proc.pid), entry("other")
        await d.publish(mortal)
        await d.publish(other)
        it = d.watch()
        try:
            assert {await next_event(it), await next_event(it)} == {
                DiscoveryEvent("added", mortal),
                DiscoveryEvent("added", other),
            }
            assert proc.stdin is not None
            proc.stdin.close()
            await asyncio.to_thread(proc.wait, 10)
            assert await next_event(it) == DiscoveryEvent("removed", mortal)
            assert set(read_doc(runtime_dir, "desk")["workers"]) == {"other"}  # pruned as well
        finally:
            await it.aclose()
            await d.withdraw(other)


# ---- corrupt registries

GOOD = entry("good")
TRUNCATED = json.dumps({"version": 1, "workers": {"good": GOOD.to_dict()}}).encode()[:30]
GARBAGE = {
    "empty": b"",
    "random": random.Random(0).randbytes(300),
    "truncated": TRUNCATED,
    "bad utf-8": b'\xff\xfe{"version"',
    "deep": b"[" * 100_000,
    "list": b"[]",
    "null": b"null",
    "no workers": b'{"version": 1}',
    "workers list": b'{"version": 1, "workers": []}',
    "future version": b'{"version": 99, "workers": {}}',
}


@pytest.mark.parametrize("raw", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_file_reads_as_empty(runtime_dir: Path, raw: bytes, warned: asyncio.Event) -> None:
    path = write_raw(runtime_dir, "desk", raw)
    d = LocalDiscovery("desk", poll_interval=0.01)
    assert await d.workers() == []
    assert warned.is_set()
    assert path.read_bytes() == raw  # readers never write (only pruning does, under the lock)
    path.unlink()


@pytest.mark.parametrize("raw", GARBAGE.values(), ids=GARBAGE.keys())
async def test_watch_survives_garbage_then_sees_a_publish(runtime_dir: Path, raw: bytes, warned: asyncio.Event) -> None:
    write_raw(runtime_dir, "desk", raw)
    d = LocalDiscovery("desk", poll_interval=0.01)
    it = d.watch()
    try:
        pending = asyncio.ensure_future(next_event(it))
        await asyncio.wait_for(warned.wait(), timeout=5)  # the watch has read the garbage
        await d.publish(GOOD)
        assert await pending == DiscoveryEvent("added", GOOD)
    finally:
        await it.aclose()
        await d.withdraw(GOOD)


@pytest.mark.parametrize("raw", GARBAGE.values(), ids=GARBAGE.keys())
async def test_publish_replaces_garbage(runtime_dir: Path, raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    write_raw(runtime_dir, "desk", raw)
    d = LocalDiscovery("desk")
    await d.publish(GOOD)
    assert read_doc(runtime_dir, "desk") == {"version": 1, "workers": {"good": GOOD.to_dict()}}
    assert any("rewriting" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    await d.withdraw(GOOD)
    assert list(registry(runtime_dir).iterdir()) == []


def mixed_file() -> bytes:
    return json.dumps(
        {
            "version": 1,
            "workers": {
                "good": GOOD.to_dict(),
                "no-pid": {"id": "no-pid", "endpoint": "tcp://h:1"},
                "bad-pid": {**entry("bad-pid").to_dict(), "pid": "12"},
                "not-a-dict": 7,
                "wrong-key": entry("other-id").to_dict(),
                "bad-public-key": {**entry("bad-public-key").to_dict(), "public_key": "short"},
            },
        }
    ).encode()


async def test_bad_entries_are_skipped(runtime_dir: Path, warned: asyncio.Event) -> None:
    write_raw(runtime_dir, "desk", mixed_file())
    d = LocalDiscovery("desk", poll_interval=0.01)
    assert await d.workers() == [GOOD]
    assert warned.is_set()
    it = d.watch()
    try:
        assert await next_event(it) == DiscoveryEvent("added", GOOD)
    finally:
        await it.aclose()
    await d.withdraw(entry("absent"))  # a writer drops the bad entries and keeps the good ones
    assert set(read_doc(runtime_dir, "desk")["workers"]) == {"good"}
    other = entry("other")
    await d.publish(other)
    assert set(read_doc(runtime_dir, "desk")["workers"]) == {"good", "other"}
    await d.withdraw(other)
    await d.withdraw(GOOD)


async def test_each_problem_is_logged_once_per_file_state(runtime_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_raw(runtime_dir, "desk", b"garbage")
    d = LocalDiscovery("desk")
    for _ in range(3):
        assert await d.workers() == []
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    path.write_bytes(b"other garbage")
    for _ in range(3):
        assert await d.workers() == []
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    path.unlink()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
entry_like = st.fixed_dictionaries(
    {"id": st.text(max_size=4), "endpoint": st.sampled_from(["tcp://h:1", "nope"]), "pid": st.integers(-2, 2**70)},
    optional={"host": json_values, "tags": json_values, "version": json_values},
)
registries = st.binary(max_size=200) | st.builds(
    lambda workers: json.dumps({"version": 1, "workers": workers}).encode(),
    st.dictionaries(st.text(max_size=4), entry_like | json_values, max_size=4),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=registries)
def test_any_file_content_never_raises(runtime_dir: Path, raw: bytes) -> None:
    path = write_raw(runtime_dir, "fuzz", raw)
    try:
        for worker in asyncio.run(LocalDiscovery("fuzz").workers()):
            assert isinstance(worker, WorkerInfo)
    finally:
        path.unlink(missing_ok=True)  # pruning may have removed it already


# ---- errors that make publishing impossible


async def test_unusable_registry_directory_raises(runtime_dir: Path) -> None:
    registry(runtime_dir).write_bytes(b"a file, not a directory")
    try:
        with pytest.raises(DiscoveryError, match="registry"):
            await LocalDiscovery("desk").publish(GOOD)
        with pytest.raises(DiscoveryError, match="registry"):
            await LocalDiscovery("desk").workers()
    finally:
        registry(runtime_dir).unlink()


async def test_unwritable_registry_file_raises(runtime_dir: Path) -> None:
    registry(runtime_dir).mkdir(mode=0o700, parents=True)
    (registry(runtime_dir) / "desk.json").mkdir()
    try:
        with pytest.raises(DiscoveryError, match="desk.json"):
            await LocalDiscovery("desk").publish(GOOD)
    finally:
        (registry(runtime_dir) / "desk.json").rmdir()
        (registry(runtime_dir) / "desk.lock").unlink()


async def test_failed_write_leaves_no_temp_file(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    d = LocalDiscovery("desk")
    await d.publish(entry("a"))
    with monkeypatch.context() as patch, pytest.raises(DiscoveryError, match="desk.json"):
        patch.setattr(os, "replace", refuse)
        await d.publish(entry("b"))
    assert sorted(p.name for p in registry(runtime_dir).iterdir()) == ["desk.json", "desk.lock"]
    assert await d.workers() == [entry("a")]
    await d.withdraw(entry("a"))


# ---- many writers

WRITER = r"""
import asyncio, os, sys
from wool.discovery import LocalDiscovery, WorkerInfo

tag = sys.argv[1]
d = LocalDiscovery("crowd")

async def main():
    pid = os.getpid()
    for i in range(10):  # churn: the namespace empties, so lock files are unlinked under waiters
        w = WorkerInfo(f"{tag}-churn-{i}", "tcp://127.0.0.1:1", pid)
        await d.publish(w)
        await d.withdraw(w)
    for i in range(25):
        await d.publish(WorkerInfo(f"{tag}-{i}", f"tcp://127.0.0.1:{2000 + i}", pid))

sys.stdin.readline()  # start together
asyncio.run(main())
print("done", flush=True)
sys.stdin.read()  # stay alive (and listed) until the parent has looked
"""


@pytest.mark.timeout(60)
def test_concurrent_writers_lose_nothing(runtime_dir: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, f"c{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=child_env(),
        )
        for n in range(8)
    ]
    with reaped(*procs):
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "done", "writer failed (see its stderr)"
        workers = asyncio.run(LocalDiscovery("crowd").workers())
        assert sorted(w.id for w in workers) == sorted(f"c{n}-{i}" for n in range(8) for i in range(25))
        assert {w.id.split("-")[0]: w.pid for w in workers} == {f"c{n}": p.pid for n, p in enumerate(procs)}
    assert [p.returncode for p in procs] == [0] * 8
    assert asyncio.run(LocalDiscovery("crowd").workers()) == []  # all dead now: pruned
    assert list(registry(runtime_dir).iterdir()) == []
