"""A worker process spawned by a pool, seen from the pool.

Workers are started as `python -m wool.worker --spawned FD`, never by forking the caller and
never by re-importing its `__main__`: a user's script runs once, guard or no guard. The
config arrives on the child's stdin as two length-prefixed parts: JSON with the caller's
`sys.path` (applied first, so that the second part can refer to the caller's modules), then
the cloudpickled `WorkerConfig`. Stdin then stays open as a lifeline: when the pool closes it,
or the pool's process dies, the worker sees end-of-file and stops by itself, so no worker
outlives its pool. Readiness is a handshake: once it serves, the worker writes its
`WorkerInfo` as one JSON line to the pipe `FD`, or `{"error": ...}` if it could not start.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle

import wool

from .. import protocol as p
from .._errors import RemoteError, WorkerStartError
from ..discovery import WorkerInfo
from ._config import WorkerConfig

_PACKAGE_ROOT = str(Path(wool.__file__).resolve().parent.parent)


def _cause(handshake: dict[str, Any]) -> BaseException | None:
    """The exception a failed start reported (a lifespan's), rebuilt with its remote
    traceback; a `RemoteError` with its text when it cannot be rebuilt here."""
    text = handshake.get("cause_text")
    if not isinstance(text, list) or len(text) != 3 or not all(isinstance(t, str) for t in text):
        return None
    pickled = handshake.get("cause")
    frames = (base64.b64decode(pickled),) if isinstance(pickled, str) else ()
    return p.loads_exception(text[0], text[1], text[2], frames) if frames else RemoteError(*text)


class WorkerProcess:
    """One spawned worker process: start it, learn its endpoint, stop it for sure."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.info: WorkerInfo | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited: asyncio.Future[int] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    async def start(self, timeout: float) -> WorkerInfo:
        """Spawn the worker and wait until it serves. Raises `WorkerStartError`."""
        loop = asyncio.get_running_loop()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "wool.worker", "--spawned", str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
                env=env,
            )
        except OSError as e:
            os.close(read_fd)
            raise WorkerStartError(f"cannot start a worker process: {e}") from e
        finally:
            os.close(write_fd)
        self._exited = loop.create_future()
        self._watch_exit(loop)
        try:
            config = cloudpickle.dumps(self.config)
        except Exception as e:
            await self.kill()
            raise WorkerStartError(f"the worker config (its discovery {self.config.discovery!r}) cannot be pickled: {e}") from e
        header = json.dumps({"sys_path": list(self.config.sys_path)}).encode()
        assert self._proc.stdin is not None
        try:
            for part in (header, config):
                self._proc.stdin.write(len(part).to_bytes(8, "big") + part)
            self._proc.stdin.flush()
        except OSError:
            pass  # it died already: the handshake below reports how
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            await self.kill()
            raise WorkerStartError(f"worker process {self.pid} was not ready within {timeout:g} s") from None
        finally:
            transport.close()
        if not line:
            code = await self._wait(5.0)
            raise WorkerStartError(f"worker process {self.pid} exited with code {code} before it was ready")
        try:
            ready = json.loads(line)
            if "error" in ready:
                await self._wait(5.0)
                cause = _cause(ready)
                raise WorkerStartError(f"worker process {self.pid} failed to start: {ready['error']}") from cause
            self.info = WorkerInfo.from_dict(ready)
        except (ValueError, TypeError) as e:
            await self.kill()
            raise WorkerStartError(f"worker process {self.pid} sent a bad handshake: {e}") from None
        return self.info

    def _watch_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._proc is not None and self._exited is not None
        proc, exited = self._proc, self._exited
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):

            def poll() -> None:
                if proc.poll() is None:
                    loop.call_later(0.05, poll)
                elif not exited.done():
                    exited.set_result(proc.returncode)

            poll()
            return

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            code = proc.wait()
            if not exited.done():
                exited.set_result(code)

        loop.add_reader(pidfd, on_exit)

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit: its exit code, or None if `timeout` ran out first."""
        return await self._wait(timeout)

    async def _wait(self, timeout: float | None) -> int | None:
        assert self._exited is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        except TimeoutError:
            return None

    async def stop(self, grace: float) -> int | None:
        """Ask the worker to stop (close its stdin), then SIGTERM, then SIGKILL."""
        if self._proc is None:
            return None
        try:
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
            code = await self._wait(grace + 2.0)
            if code is None:
                self._proc.terminate()
                code = await self._wait(2.0)
            if code is None:
                return await self.kill()
            return code
        except BaseException:
            await asyncio.shield(self.kill())
            raise

    async def kill(self) -> int | None:
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
        return await self._wait(10.0)
