"""Each process's cache of shared values it has mapped: bounded, least recently used first out.

A value is mapped and unpickled once per process and kept here, so that every later call
that needs it gets the same object (numpy arrays: the same read-only view of the same pages).
The cache counts the bytes of each value's shared memory against its limit (`--share-cache`,
`WorkerPool(share_cache=...)`); past it, the least recently used values are dropped (their
pages stay mapped only while something still refers to them) and mapped again when needed.
A value larger than the whole limit is handed out without being kept.

Every use checks that the value is still there: a released value's file is gone (its
tombstone says where it was released), and a value whose owner died is `SharedLost` even if
its file is still there. Guarded by a lock: plain `def` routines read values from threads.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
from typing import Any

from .._errors import SharedLost, SharedReleased
from . import _layout, _store


def default_limit() -> int:
    """1 GiB, or a quarter of this host's memory if that is less."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 4 << 30
    return min(1 << 30, ram // 4)


def check_share_cache(limit: object) -> int:
    """`limit` if it is a valid cache size in bytes (an int of at least 0), else raises."""
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"share_cache must be an int (bytes), not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"share_cache must not be negative, got {limit}")
    return limit


@dataclasses.dataclass(slots=True)
class _Entry:
    value: Any
    size: int
    local: Any = None  # the file of a value fetched from another host, removed with it


@dataclasses.dataclass(slots=True)
class CacheStats:
    """What this process's cache did: values mapped (`loads`), dropped (`evictions`), and
    the bytes it holds now."""

    loads: int = 0
    fetches: int = 0  # of those, fetched from another host
    parts: int = 0  # parts received fetching them
    evictions: int = 0
    bytes: int = 0
    values: int = 0


class ShareCache:
    MISSING: Any = object()

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def resize(self, limit: int) -> None:
        with self._lock:
            self.limit = check_share_cache(limit)
            evicted = self._evict()
        for k, e in evicted:
            self._dropped(k, e)

    def drop(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self.stats.bytes -= entry.size
                self.stats.values -= 1
        if entry is not None:
            self._dropped(key, entry)

    def _dropped(self, key: str, entry: _Entry) -> None:
        if entry.local is not None:
            _store.readable.pop(key, None)
            _store.remove(entry.local, None)

    def cached(self, key: str) -> Any:
        """The value of `key` if this process holds it, else `MISSING`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return self.MISSING
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: str, path: Any, size: int, local: bool = False) -> Any:
        """Map and load the value in the file at `path` (`local`: fetched by this process,
        removed when dropped), keep it if it fits, and return it."""
        mapping = _store.open_mapped(path, size)
        value = _layout.loads(memoryview(mapping).toreadonly())
        _store.readable[key] = path
        entry = _Entry(value, size, path if local else None)
        with self._lock:
            self.stats.loads += 1
            self.stats.fetches += local
            if size <= self.limit and key not in self._entries:
                self._entries[key] = entry
                self.stats.bytes += size
                self.stats.values += 1
                evicted = self._evict()
            else:
                evicted = []
        for k, e in evicted:
            self._dropped(k, e)
        if key not in self._entries and local:
            _store.readable.pop(key, None)  # not kept: remove its file once loaded
            _store.remove(path, None)
        return value

    def get(self, key: str, path: Any, size: int, owner: tuple[int, int], describe: str) -> Any:
        """The value of `key` (its file at `path`, of `size` bytes, made by `owner`: pid and
        start time). Raises `SharedReleased` or `SharedLost` (see the module docstring)."""
        self._check(key, path, owner, describe)
        value = self.cached(key)
        if value is not self.MISSING:
            return value
        try:
            return self.put(key, path, size)
        except FileNotFoundError:
            self._check(key, path, owner, describe)  # gone meanwhile: says why
            raise SharedReleased(f"{describe} was released") from None

    def _check(self, key: str, path: Any, owner: tuple[int, int], describe: str) -> None:
        pid, started = owner
        if os.path.lexists(path):
            if pid == os.getpid() or _store.alive(pid, started):
                return
            self.drop(key)
            _store.remove(path, None)  # ours (same user): free its memory
            raise SharedLost(f"{describe} is lost: the process that shared it (pid {pid}) has exited")
        self.drop(key)
        site = _store.released_at(path)
        if site is not None:
            raise SharedReleased(f"{describe} was released {site}")
        if pid != os.getpid() and not _store.alive(pid, started):
            raise SharedLost(f"{describe} is lost: the process that shared it (pid {pid}) has exited")
        raise SharedReleased(f"{describe} was released")

    def _evict(self) -> list[tuple[str, _Entry]]:
        evicted = []
        while self.stats.bytes > self.limit and self._entries:
            key, entry = self._entries.popitem(last=False)
            self.stats.bytes -= entry.size
            self.stats.values -= 1
            self.stats.evictions += 1
            evicted.append((key, entry))
        return evicted


cache = ShareCache(default_limit())
