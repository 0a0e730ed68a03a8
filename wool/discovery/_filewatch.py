"""Waking up when a file may have changed: inotify where the kernel offers it, else polling.

A registry watcher used to stat its file every 0.1 s, so every idle worker woke ten times a
second for nothing. With inotify (through `inotify_simple`, a thin ctypes wrapper whose
descriptor we hand to the event loop) a watcher sleeps until the kernel reports a write,
rename or deletion in the registry directory naming its file, and costs nothing meanwhile.

Polling remains only where inotify cannot be had: not Linux, the library missing, or the
per-user limit of inotify instances (`fs.inotify.max_user_instances`, 128 by default)
reached. A poller cannot tell a change from its absence, so `exact` is False and the
caller compares the file's state itself.

The directory is watched rather than the file because writers replace the file with a
rename (a watch on the file would follow the old inode). The watch is set up before the
caller first reads the file, so no change between that read and the first wait is missed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import inotify_simple
except ImportError:  # optional at run time: polling works everywhere
    inotify_simple = None

log = logging.getLogger("wool.discovery")

COALESCE = 0.02  # seconds a wake-up waits for the rest of a burst of writes

_IN_IGNORED = 0x8000  # the watch is gone (the directory was deleted or moved away)
_IN_Q_OVERFLOW = 0x4000  # events were dropped: anything may have changed
# Writes in place (truncate, write, close), atomic replacement (rename over it), creation,
# deletion, and metadata changes such as a restored mtime.
_MASK = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200  # MODIFY ATTRIB CLOSE_WRITE MOVED_FROM MOVED_TO CREATE DELETE


class FileWatch:
    """Waits for changes of the file at `path`. Use as a context manager (it owns a
    descriptor and a reader on the running loop)."""

    def __init__(self, path: Path, poll_interval: float) -> None:
        self._name = path.name
        self._poll_interval = poll_interval
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        self._inotify: Any = None
        if inotify_simple is not None:
            try:
                inotify = inotify_simple.INotify(nonblocking=True)
            except OSError as e:
                log.info("inotify is unavailable (%s); polling %s every %g s", e, path, poll_interval)
                return
            try:
                inotify.add_watch(str(path.parent), _MASK)
                self._loop.add_reader(inotify.fileno(), self._on_readable)
            except OSError as e:
                inotify.close()
                log.info("cannot watch %s with inotify (%s); polling it every %g s", path.parent, e, poll_interval)
                return
            self._inotify = inotify

    @property
    def exact(self) -> bool:
        """Whether a wake-up means the file changed (inotify), rather than a poll's tick."""
        return self._inotify is not None

    def __enter__(self) -> FileWatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._inotify is not None:
            self._loop.remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None

    async def wait(self, timeout: float) -> bool:
        """Until the file may have changed (True), or `timeout` seconds passed (False)."""
        if self._inotify is None:
            await asyncio.sleep(min(timeout, self._poll_interval))
            return True
        if not self._woken.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._woken.wait()
            except TimeoutError:
                return False
        # Writes come in bursts (a pool's workers all publish as they start): let the rest of
        # a burst land, so that one read sees it all instead of one read per write.
        await asyncio.sleep(COALESCE)
        self._woken.clear()
        return True

    def _on_readable(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except OSError as e:
            log.warning("reading inotify events failed (%s); polling from now on", e)
            self.close()
            self._woken.set()
            return
        for event in events:
            if event.mask & _IN_IGNORED:
                log.info("the registry directory is no longer watched; polling from now on")
                self.close()
                self._woken.set()
                return
            if event.name == self._name or event.mask & _IN_Q_OVERFLOW:
                self._woken.set()
