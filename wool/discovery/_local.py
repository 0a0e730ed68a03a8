"""Registry-file discovery: one JSON file per namespace, shared by one user's processes.

Theory of operation. Writers serialise on an exclusive `flock` of `<name>.lock`, read
`<name>.json`, change it, and `os.replace` a temp file over it: readers see the old file or the
new one, never half of one, and take no lock. The last withdraw deletes both files; a writer
that locked a lock file just as it was unlinked sees that the path now names another inode
(or none) and starts over.

A crashed worker never rewrites the file, so readers hide entries whose local pid is gone and
prune them (best effort). `watch` sleeps until inotify reports a change of the file (see
`_filewatch`), re-reads it then, and re-checks pids every `PID_CHECK_INTERVAL` seconds: an idle
watcher costs next to nothing. Where inotify is unavailable it polls the file's (mtime, size,
inode) instead and re-reads it when that changes. Timestamps are coarse and inodes are reused,
so two quick writes could restore a state already seen: as in git's "racily clean" rule, a
polled file modified within the last second is re-read on every poll. A corrupt file never breaks a reader:
bad entries are skipped, an unreadable file reads as empty (a watcher keeps its last readable
view instead, so a torn or clobbered file does not withdraw every worker at once), each problem
is logged once per file state, and the next writer replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

from .._info import DiscoveryError, DiscoveryEvent, WorkerInfo
from .._pids import process_exists
from .._seconds import check_seconds
from ._filewatch import FileWatch
from ._paths import open_file, private_dir, runtime_dir

log = logging.getLogger("wool.discovery")

_NAME = re.compile(r"[A-Za-z0-9._-]+")
_MAX_NAME = 100
_FORMAT = 1
_RACY_NS = 1_000_000_000
# How often a watcher checks that the processes of listed local workers still exist: a worker
# killed outright never rewrites the file, so no file event tells of it. Pools do not wait on
# this (a lost connection tells them at once, and their `workers()` then prunes the entry);
# it keeps `watch` truthful, for one kill(pid, 0) per entry each time.
PID_CHECK_INTERVAL = 5.0

FileState = tuple[int, int, int]
Entries = dict[str, WorkerInfo]

# Problems already logged, keyed on file state, so polling an unchanged corrupt file logs once.
_logged: set[tuple[str, FileState | None, str]] = set()


def _warn_once(path: Path, state: FileState | None, problem: str) -> None:
    key = (str(path), state, problem)
    if key not in _logged:
        if len(_logged) > 1024:
            _logged.clear()
        _logged.add(key)
        log.warning("wool registry %s: %s", path, problem)


def _state(st: os.stat_result) -> FileState:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _stat(path: Path) -> FileState | None:
    try:
        return _state(os.lstat(path))
    except OSError:
        return None


def _changed(path: Path, state: FileState | None) -> bool:
    """Whether the file may differ from the one read at `state`."""
    return _stat(path) != state or (state is not None and time.time_ns() - state[0] < _RACY_NS)


def _parse(raw: bytes) -> tuple[Entries | None, list[str]]:
    """Entries of a registry file (None if the file as a whole is unusable) and the problems
    found in it; never raises."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        return None, [f"not valid JSON ({e.__class__.__name__}); reading it as empty"]
    if not isinstance(doc, dict) or not isinstance(doc.get("workers"), dict):
        return None, ["not a registry (no 'workers' mapping); reading it as empty"]
    if doc.get("version") != _FORMAT:
        return None, [f"unsupported format version {doc.get('version')!r}; reading it as empty"]
    entries: Entries = {}
    problems = []
    for key, value in doc["workers"].items():
        try:
            info = WorkerInfo.from_dict(value)
            if info.id != key:
                raise ValueError(f"its id is {info.id!r}")
        except (ValueError, TypeError) as e:
            problems.append(f"skipping entry {key!r}: {e}")
        else:
            entries[key] = info
    return entries, problems


def _read_bytes(path: Path) -> tuple[os.stat_result, bytes]:
    """The registry file's content, opened without following a link and checked to be ours
    (`DiscoveryError` if not: another user's entries would send our calls anywhere)."""
    with os.fdopen(open_file(path), "rb") as f:
        return os.fstat(f.fileno()), f.read()


def _read(path: Path) -> tuple[FileState | None, Entries | None]:
    """Read without the lock (files are replaced atomically); corrupt content is logged.
    Entries are None when the file exists but is unusable as a whole. Raises
    `DiscoveryError` for a file that is not safely ours (a link, another user's)."""
    try:
        info, raw = _read_bytes(path)
        state = _state(info)
    except FileNotFoundError:
        return None, {}
    except DiscoveryError:
        raise
    except OSError as e:
        _warn_once(path, _stat(path), f"cannot read it ({e}); reading it as empty")
        return None, None
    entries, problems = _parse(raw)
    for problem in problems:
        _warn_once(path, state, problem)
    return state, entries


# The last read of each registry file, so that `workers()` (which every worker calls each
# second to check that it is still listed) re-reads only a file that may have changed.
_last_read: dict[Path, tuple[FileState, Entries]] = {}


def _read_if_changed(path: Path) -> Entries | None:
    """`_read(path)`'s entries, from the last read when the file cannot have changed since."""
    cached = _last_read.get(path)
    if cached is not None and not _changed(path, cached[0]):
        return cached[1]
    state, entries = _read(path)
    if state is None or entries is None:
        _last_read.pop(path, None)
    else:
        if len(_last_read) > 64:
            _last_read.clear()
        _last_read[path] = (state, entries)
    return entries


def _is_dead(info: WorkerInfo, hostname: str) -> bool:
    return info.host in ("", hostname) and not process_exists(info.pid)


def _live(entries: Entries) -> tuple[Entries, bool]:
    """The entries whose process may be alive, and whether any were dropped."""
    hostname = socket.gethostname()
    live = {k: v for k, v in entries.items() if not _is_dead(v, hostname)}
    return live, len(live) != len(entries)


def _diff(old: Entries, new: Entries) -> list[DiscoveryEvent]:
    events = [DiscoveryEvent("removed", info) for key, info in old.items() if key not in new]
    for key, info in new.items():
        if key not in old:
            events.append(DiscoveryEvent("added", info))
        elif old[key] != info:
            events.append(DiscoveryEvent("updated", info))
    return events


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold the namespace's writer lock (retrying if the lock file was unlinked under us)."""
    while True:
        fd = open_file(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                current = os.lstat(lock_path)
            except FileNotFoundError:
                continue
            if (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino):
                yield
                return
        finally:
            os.close(fd)  # also releases the flock


def _write(path: Path, entries: Entries) -> None:
    doc = {"version": _FORMAT, "workers": {k: v.to_dict() for k, v in entries.items()}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class LocalDiscovery:
    """Discovery through a registry file shared by the processes of this user on this machine.

    The file lives in the user's private runtime directory (`WOOL_RUNTIME_DIR`, else
    `$XDG_RUNTIME_DIR/wool`, else `wool-$UID` in the temporary directory; 0700); workers
    started with `--discovery local:NAME` and pools
    with `LocalDiscovery(NAME)` find each other there. Picklable: only the name and poll
    interval travel, and the directory is resolved where it is used, so a spawned worker
    honours its own `WOOL_RUNTIME_DIR`. Methods raise `DiscoveryError` when the registry
    cannot be written (reading a corrupt one never raises).

    Args:
        name: The namespace: 1 to 100 characters of `A-Z a-z 0-9 . _ -`, not starting with
            `.`.
        poll_interval: Seconds between polls of the file where inotify is unavailable.

    Raises:
        TypeError: `name` is not a string, or `poll_interval` not a number.
        ValueError: `name` is empty, too long or has other characters, or `poll_interval`
            is not positive.

    Example:
        ```python
        async with wool.WorkerPool(discovery=wool.LocalDiscovery("desk")):
            ...                            # workers of `python -m wool.worker --discovery local:desk`
        ```
    """

    __slots__ = ("name", "poll_interval")

    def __init__(self, name: str, *, poll_interval: float = 0.1) -> None:
        if not isinstance(name, str):
            raise TypeError(f"discovery namespace must be a str, not {type(name).__name__}")
        if not name:
            raise ValueError("discovery namespace must not be empty")
        if len(name) > _MAX_NAME:
            raise ValueError(f"discovery namespace is longer than {_MAX_NAME} characters")
        if not _NAME.fullmatch(name):
            raise ValueError(f"discovery namespace {name!r} may only contain A-Z a-z 0-9 . _ -")
        if name.startswith("."):
            raise ValueError(f"discovery namespace {name!r} must not start with '.'")
        self.poll_interval = check_seconds(poll_interval, "poll_interval", positive=True)
        self.name = name

    def __repr__(self) -> str:
        return f"LocalDiscovery({self.name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalDiscovery):
            return NotImplemented
        return self.name == other.name

    def __hash__(self) -> int:
        return hash((LocalDiscovery, self.name))

    def _path(self) -> Path:
        return private_dir(runtime_dir() / "registry") / f"{self.name}.json"

    def _modify(self, put: WorkerInfo | None = None, drop: str | None = None) -> None:
        """Under the lock: add `put`, remove `drop`, prune other dead entries, write back."""
        path = self._path()
        lock_path = path.with_suffix(".lock")
        try:
            with _locked(lock_path):
                try:
                    raw: bytes | None = _read_bytes(path)[1]
                except FileNotFoundError:
                    raw = None
                parsed, problems = _parse(raw) if raw is not None else ({}, [])
                old = parsed or {}
                if problems:
                    log.warning("wool registry %s: %s; rewriting it", path, "; ".join(problems))
                new, _ = _live({k: v for k, v in old.items() if k != drop})
                if put is not None:
                    new[put.id] = put  # the publisher's word stands, whatever its pid
                if not new:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    lock_path.unlink()  # still locked: a waiting writer will see it is stale
                elif new != old or problems:
                    _write(path, new)
        except OSError as e:
            raise DiscoveryError(f"cannot update registry {path}: {e}") from e

    async def publish(self, worker: WorkerInfo) -> None:
        """Add `worker`, or replace the entry with its id.

        Raises:
            DiscoveryError: The registry file could not be written.
        """
        await asyncio.to_thread(self._modify, put=worker)

    async def withdraw(self, worker: WorkerInfo) -> None:
        """Remove `worker`'s entry (absent is fine).

        Raises:
            DiscoveryError: The registry file could not be written.
        """
        await asyncio.to_thread(self._modify, drop=worker.id)

    async def _prune(self) -> None:
        try:
            await asyncio.to_thread(self._modify)
        except DiscoveryError as e:
            log.debug("could not prune dead workers: %s", e)

    async def workers(self) -> list[WorkerInfo]:
        """The published workers, minus entries of dead local processes (pruned from the file)."""
        live, dropped = _live(_read_if_changed(self._path()) or {})
        if dropped:
            await self._prune()
        return sorted(live.values(), key=lambda w: w.id)

    async def watch(self) -> AsyncGenerator[DiscoveryEvent, None]:
        """Yield "added" for each current worker, then one event per change: at once for a
        change of the file (inotify; where that is unavailable, by polling every
        `poll_interval` seconds), within `PID_CHECK_INTERVAL` for a listed local process
        that died without withdrawing. Stops cleanly on `aclose()` or cancellation."""
        path = self._path()
        with FileWatch(path, self.poll_interval) as changes:
            state, read = _read(path)  # after the watch is set: no change can slip between
            entries: Entries = read or {}
            seen: Entries = {}
            while True:
                live, dropped = _live(entries)
                events = _diff(seen, live)
                seen = live
                if dropped:
                    await self._prune()
                for event in events:
                    yield event
                woken = await changes.wait(PID_CHECK_INTERVAL)
                # inotify reports every write, so a wake-up always re-reads; a poll's tick
                # re-reads only a file that may differ (see `_changed`).
                if woken and (changes.exact or _changed(path, state)):
                    try:
                        state, read = _read(path)
                    except DiscoveryError as e:  # replaced by a link or another user's file
                        _warn_once(path, _stat(path), f"{e}; keeping the entries last read from it")
                        state, read = _stat(path), None
                    if read is not None:  # else keep the last readable view until a writer fixes it
                        entries = read


STALE_TEMP_AGE = 60.0  # a writer's temp file older than this was left by a writer that died


def prune_registry() -> None:
    """Remove what dead processes left in this user's registry directory: the entries of
    local workers that no longer exist, the files of namespaces left with none (a pool killed
    outright, whose workers died with it, leaves its private namespace's `.json` and `.lock`),
    and temp files of writers that died mid-write. Best effort, and blocking: run it off the
    loop. A namespace in use keeps its live entries; its lock serialises this like any writer."""
    try:
        directory = runtime_dir() / "registry"
        names = os.listdir(directory)
    except (OSError, DiscoveryError):
        return
    now = time.time()
    for name in sorted({n.rsplit(".", 1)[0] for n in names if n.endswith((".json", ".lock")) and not n.startswith(".")}):
        path = directory / f"{name}.json"
        try:
            state, entries = _read(path)
            # Write only where something is dead (a file that is not ours is left to its
            # owner, and no lock file is made for it): a lock with no registry, dead entries.
            if (state is None and entries == {}) or (entries and _live(entries)[1]):
                LocalDiscovery(name)._modify()
        except (ValueError, DiscoveryError) as e:
            log.debug("could not prune registry namespace %r: %s", name, e)
    for name in names:
        if name.startswith(".") and name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                if now - os.lstat(directory / name).st_mtime > STALE_TEMP_AGE:
                    os.unlink(directory / name)
