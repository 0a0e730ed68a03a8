"""Shared fixtures: every test gets a private runtime directory, and fails if it leaves a
child process, a thread, a registry entry or a worker's socket file behind."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from zmq.utils.garbage import GarbageCollectorThread


@pytest.fixture(autouse=True)
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Short, so ipc paths below it stay within the 107-byte socket path limit.
    with tempfile.TemporaryDirectory(prefix="wool-test-") as path:
        monkeypatch.setenv("WOOL_RUNTIME_DIR", path)
        yield Path(path)


@pytest.fixture(autouse=True)
def no_leaks(runtime_dir: Path) -> Iterator[None]:
    threads_before = set(threading.enumerate())
    yield
    me = psutil.Process()
    children = [c for c in me.children(recursive=True) if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    for child in children:
        child.kill()
    psutil.wait_procs(children, timeout=5)
    for thread in set(threading.enumerate()) - threads_before:
        if thread.name.startswith("asyncio-waitpid"):
            # asyncio's child watcher thread ends just after handing over the exit status the
            # test already awaited: join it rather than race its exit.
            thread.join(timeout=5)
    # pyzmq starts one GarbageCollectorThread per process, at its first zero-copy send (a frame
    # of 64 KiB or more), and keeps it for the life of the process: not a leak.
    leaked_threads = [
        t for t in set(threading.enumerate()) - threads_before if t.is_alive() and not isinstance(t, GarbageCollectorThread)
    ]
    registry = runtime_dir / "registry"
    entries = sorted(p.name for p in registry.iterdir()) if registry.exists() else []
    sockets_dir = runtime_dir / "sockets"
    sockets = sorted(p.name for p in sockets_dir.iterdir()) if sockets_dir.exists() else []
    assert not children, f"test left child processes behind: {[c.pid for c in children]}"
    assert not leaked_threads, f"test left threads behind: {leaked_threads}"
    assert not entries, f"test left registry files behind: {entries}"
    assert not sockets, f"test left worker sockets behind: {sockets}"
