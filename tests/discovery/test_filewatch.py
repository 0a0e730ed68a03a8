"""Registry watchers sleep until the kernel reports a change (inotify), and poll only where
inotify is unavailable."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from wool.discovery import DiscoveryEvent, LocalDiscovery, WorkerInfo, _filewatch
from wool.discovery._filewatch import FileWatch

pytestmark = pytest.mark.skipif(_filewatch.inotify_simple is None, reason="inotify_simple is not installed (not Linux?)")


def entry(wid: str, *tags: str) -> WorkerInfo:
    return WorkerInfo(wid, f"tcp://127.0.0.1:{5000 + len(wid)}", os.getpid(), "", frozenset(tags))


async def next_event(it: Any) -> DiscoveryEvent:
    return await asyncio.wait_for(anext(it), timeout=5)


async def test_a_watch_that_never_polls_sees_every_kind_of_change(runtime_dir: Path) -> None:
    """An hour between polls: whatever it sees within seconds, the kernel told it."""
    d = LocalDiscovery("desk", poll_interval=3600)
    first, second = entry("a"), entry("b", "t")
    await d.publish(first)
    it = d.watch()
    try:
        assert await next_event(it) == DiscoveryEvent("added", first)
        await d.publish(second)  # an atomic replacement (rename over the file)
        assert await next_event(it) == DiscoveryEvent("added", second)
        path = runtime_dir / "registry" / "desk.json"
        raw = path.read_bytes().replace(b'"t"', b'"u"')
        with open(path, "r+b") as f:  # a rewrite in place, same inode
            f.truncate(0)
            f.write(raw)
        assert await next_event(it) == DiscoveryEvent("updated", entry("b", "u"))
        await d.withdraw(first)
        assert await next_event(it) == DiscoveryEvent("removed", first)
        await d.withdraw(second)  # the last one: the file is deleted
        assert await next_event(it) == DiscoveryEvent("removed", entry("b", "u"))
    finally:
        await it.aclose()


async def test_an_idle_file_watch_stays_asleep_and_wakes_for_its_file_only(tmp_path: Path) -> None:
    path = tmp_path / "desk.json"
    with FileWatch(path, poll_interval=3600) as changes:
        assert changes.exact
        assert await changes.wait(0.05) is False  # nothing changed: it timed out, never woke
        (tmp_path / "other.json").write_bytes(b"{}")  # another namespace's file
        assert await changes.wait(0.05) is False
        path.write_bytes(b"{}")
        assert await changes.wait(5) is True


async def test_without_the_library_a_watch_polls(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_filewatch, "inotify_simple", None)
    d = LocalDiscovery("desk", poll_interval=0.01)
    it = d.watch()
    try:
        pending = asyncio.ensure_future(next_event(it))
        await d.publish(entry("a"))
        assert await pending == DiscoveryEvent("added", entry("a"))
    finally:
        await it.aclose()
        await d.withdraw(entry("a"))


async def test_when_the_kernel_refuses_an_instance_a_watch_polls_and_says_so(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Exhausted:
        def __init__(self, **_: Any) -> None:
            raise OSError(errno.EMFILE, "Too many open files")  # fs.inotify.max_user_instances

    monkeypatch.setattr(_filewatch.inotify_simple, "INotify", Exhausted)
    caplog.set_level("INFO", "wool.discovery")
    with FileWatch(runtime_dir / "desk.json", poll_interval=0.01) as changes:
        assert not changes.exact
        assert await changes.wait(5) is True  # a poll's tick
    assert any("inotify is unavailable" in r.getMessage() for r in caplog.records)


async def test_a_deleted_directory_turns_the_watch_into_polling(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    directory.mkdir()
    with FileWatch(directory / "desk.json", poll_interval=0.01) as changes:
        directory.rmdir()
        assert await changes.wait(5) is True
        assert not changes.exact
        assert await changes.wait(5) is True  # and it keeps ticking
