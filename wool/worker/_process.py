"""A worker process spawned by a pool, seen from the pool.

Workers are forked by the pool's worker template (`python -m wool.worker --template FD`, see
`_template`), or, where that cannot work, started as `python -m wool.worker --spawned FD`;
never by forking the caller, and never by re-importing its `__main__`: a user's script runs
once, guard or no guard. Both run in Python's safe-path mode (`-P`): `python -m` would
otherwise put the working directory, which the pool inherits from whoever started it and
which may be writable by others (`cd /shared/dir && python /private/app.py`), first on
`sys.path`, and the template would import a planted `uvloop.py` (or `wool.py`,
`cloudpickle.py`) from it before anything else. wool itself is found through the
`PYTHONPATH` the pool passes, and the caller's modules through its own `sys.path`, which the
worker applies before unpickling anything (`--spawned`, and every worker a template forks).
Either way the config arrives on the child's stdin as two length-prefixed parts: JSON with the caller's
`sys.path` (applied first, so that the second part can refer to the caller's modules), then
the cloudpickled `WorkerConfig`. Stdin then stays open as a lifeline: when the pool closes it,
or the pool's process dies, the worker sees end-of-file and stops by itself, so no worker
outlives its pool. Readiness is a handshake: once it serves, the worker writes its
`WorkerInfo` as one JSON line to the pipe `FD`, or `{"error": ...}` if it could not start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import cloudpickle

from .. import protocol as p
from .._errors import RemoteError, WorkerStartError
from ..discovery import WorkerInfo
from ._config import WorkerConfig
from ._lifeline import PARENT_ENV

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the folder holding `wool/`
# The exit code of a forked worker that exited after its template did: the template reaped
# nothing for it, so its code is lost (no signal has this number).
EXIT_UNKNOWN = -255


def _cause(handshake: dict[str, Any]) -> BaseException | None:
    """The exception a failed start reported (a lifespan's), rebuilt with its remote
    traceback; a `RemoteError` with its text when it cannot be rebuilt here."""
    text = handshake.get("cause_text")
    if not isinstance(text, list) or len(text) != 3 or not all(isinstance(t, str) for t in text):
        return None
    pickled = handshake.get("cause")
    frames = (base64.b64decode(pickled),) if isinstance(pickled, str) else ()
    return p.loads_exception(text[0], text[1], text[2], frames) if frames else RemoteError(*text)


# `-P`: the working directory is not put on the worker's sys.path (see the module docstring).
_PYTHON = (sys.executable, "-P", "-m", "wool.worker")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    env[PARENT_ENV] = str(os.getpid())  # it dies with this process (see `_lifeline`)
    return env


def _watch_exit(proc: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """A future of `proc`'s exit code, set when it exits (a pidfd on the loop, else polling)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):

        def poll() -> None:
            if proc.poll() is None:
                loop.call_later(0.05, poll)
            elif not exited.done():
                exited.set_result(proc.returncode)

        poll()
        return exited

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        code = proc.wait()
        if not exited.done():
            exited.set_result(code)

    loop.add_reader(pidfd, on_exit)
    return exited


def templates_work() -> bool:
    """Whether this platform can fork workers from a template (Linux and most Unixes)."""
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")


class Template:
    """The pool's side of its worker template process (see `_template`): ask it to fork
    workers, learn their pids and, later, their exit codes."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [*_PYTHON, "--template", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=_environment(),
            )
        except OSError as e:
            ours.close()
            raise WorkerStartError(f"cannot start the worker template process: {e}") from e
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._exited = _watch_exit(self._proc)
        self._pids: deque[asyncio.Future[int]] = deque()  # spawns not yet answered, in order
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._dead: dict[int, asyncio.Future[int]] = {}  # exited, code not reported yet
        self._loop.add_reader(ours.fileno(), self._on_readable)
        self.closed = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def spawn(self, stdin_fd: int, ready_fd: int) -> tuple[int, asyncio.Future[int]]:
        """Fork a worker with these pipe ends (the caller closes its copies): its pid, and
        the future of its exit code. Raises `WorkerStartError` if the template is gone."""
        if self.closed:
            raise WorkerStartError(f"the worker template process {self.pid} has exited")
        pid: asyncio.Future[int] = self._loop.create_future()
        self._pids.append(pid)
        try:
            socket.send_fds(self._sock, [b"spawn"], [stdin_fd, ready_fd])
        except OSError as e:
            self._pids.remove(pid)
            raise WorkerStartError(f"cannot ask the worker template process {self.pid} for a worker: {e}") from e
        child = await pid
        return child, self._exits[child]

    def _on_readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            kind, *fields = data.decode("ascii", "replace").split()
            if kind == "pid" and len(fields) == 1 and self._pids:
                child = int(fields[0])
                self._exits[child] = self._loop.create_future()
                waiter = self._pids.popleft()
                if not waiter.done():
                    waiter.set_result(child)
                else:  # its start was abandoned (timed out, cancelled): nobody will stop it
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)  # not yet reaped: the template reports exits
            elif kind == "exit" and len(fields) == 2:
                self._dead.pop(int(fields[0]), None)
                exited = self._exits.get(int(fields[0]))
                if exited is not None and not exited.done():
                    exited.set_result(int(fields[1]))

    def exited(self, pid: int, exited: asyncio.Future[int]) -> None:
        """Worker `pid` has exited (its pidfd says so). Its code comes from the template,
        which reaps it; once the template is gone nobody can tell it, and `exited` gets
        `EXIT_UNKNOWN`, so that nothing waits for a code that will never come."""
        if self.closed:
            if not exited.done():
                exited.set_result(EXIT_UNKNOWN)
        else:
            self._dead[pid] = exited

    def _gone(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        dead, self._dead = self._dead, {}
        for exited in dead.values():  # exited, and the template went before it reported them
            if not exited.done():
                exited.set_result(EXIT_UNKNOWN)
        while self._pids:
            waiter = self._pids.popleft()
            if not waiter.done():
                waiter.set_exception(WorkerStartError(f"the worker template process {self.pid} exited"))

    async def close(self) -> None:
        """Let the template exit (its workers are stopped first: they outlive it otherwise,
        until their own stdin closes) and wait for it; kill it if it lingers."""
        self._gone()
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), 5.0)
        except TimeoutError:
            self._proc.kill()
            await asyncio.wait_for(asyncio.shield(self._exited), 10.0)

    async def kill(self) -> None:
        """Kill the template now and wait for it (its workers are killed on their own)."""
        self._gone()
        if not self._exited.done():
            self._proc.kill()
        await asyncio.wait_for(asyncio.shield(self._exited), 10.0)


class WorkerProcess:
    """One spawned worker process: start it, learn its endpoint, stop it for sure. With a
    `template`, it is forked from that; else it is a fresh interpreter."""

    def __init__(self, config: WorkerConfig, template: Template | None = None) -> None:
        self.config = config
        self.info: WorkerInfo | None = None
        self._template = template
        self._pid: int | None = None
        self._stdin: IO[bytes] | None = None
        self._exited: asyncio.Future[int] | None = None
        self._signal: Callable[[int], None] | None = None
        # After the handshake, the ready pipe carries the worker's notices (see `notice`).
        self._notices: asyncio.StreamReader | None = None
        self._notices_transport: asyncio.ReadTransport | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def returncode(self) -> int | None:
        exited = self._exited
        return exited.result() if exited is not None and exited.done() and not exited.cancelled() else None

    async def start(self, timeout: float) -> WorkerInfo:
        """Spawn the worker and wait until it serves. Raises `WorkerStartError`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        read_fd, write_fd = os.pipe()
        try:
            if self._template is None:
                self._popen(write_fd)
            else:
                try:
                    await asyncio.wait_for(self._fork(write_fd), timeout)
                except TimeoutError:
                    raise WorkerStartError(f"a worker process was not ready within {timeout:g} s (not even forked)") from None
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        try:
            config = cloudpickle.dumps(self.config)
        except Exception as e:
            await self.kill()
            os.close(read_fd)
            raise WorkerStartError(f"the worker config (its discovery {self.config.discovery!r}) cannot be pickled: {e}") from e
        header = json.dumps({"sys_path": list(self.config.sys_path)}).encode()
        assert self._stdin is not None
        try:
            for part in (header, config):
                self._stdin.write(len(part).to_bytes(8, "big") + part)
            self._stdin.flush()
        except OSError:
            pass  # it died already: the handshake below reports how
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
        try:
            line = await asyncio.wait_for(reader.readline(), max(0.0, deadline - loop.time()))
        except BaseException as e:
            transport.close()
            if isinstance(e, TimeoutError):
                await self.kill()
                raise WorkerStartError(f"worker process {self.pid} was not ready within {timeout:g} s") from None
            raise
        if not line or b'"error"' in line:
            transport.close()
        else:
            self._notices, self._notices_transport = reader, transport
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
            self.close_notices()
            await self.kill()
            raise WorkerStartError(f"worker process {self.pid} sent a bad handshake: {e}") from None
        return self.info

    def _popen(self, ready_fd: int) -> None:
        try:
            proc = subprocess.Popen(
                [*_PYTHON, "--spawned", str(ready_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(ready_fd,),
                env=_environment(),
            )
        except OSError as e:
            raise WorkerStartError(f"cannot start a worker process: {e}") from e
        self._pid, self._stdin, self._signal = proc.pid, proc.stdin, proc.send_signal
        self._exited = _watch_exit(proc)

    async def _fork(self, ready_fd: int) -> None:
        assert self._template is not None
        stdin_r, stdin_w = os.pipe()
        try:
            self._pid, self._exited = await self._template.spawn(stdin_r, ready_fd)
        except BaseException:
            os.close(stdin_w)
            raise
        finally:
            os.close(stdin_r)
        self._stdin = os.fdopen(stdin_w, "wb")
        exited = self._exited
        try:
            # Not our child: signal it through a pidfd, which cannot reach a later process
            # that reused the pid.
            pidfd = os.pidfd_open(self._pid)
        except (AttributeError, OSError):
            pid = self._pid

            def send(sig: int) -> None:
                if not exited.done():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)

            self._signal = send
            return

        def send_through_pidfd(sig: int) -> None:
            if not exited.done():
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, sig)

        # The pidfd also says when the worker exits: its code still comes from the template,
        # which reaps it, unless the template is gone (see `Template.exited`).
        template, pid, loop = self._template, self._pid, asyncio.get_running_loop()

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            template.exited(pid, exited)

        def release(_: object) -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)

        loop.add_reader(pidfd, on_exit)
        exited.add_done_callback(release)
        self._signal = send_through_pidfd

    async def notice(self) -> dict[str, Any] | None:
        """The worker's next notice (a JSON object; see `_recycle`), or None once it has
        exited or sent something else: it is one of ours, but it runs user code."""
        reader = self._notices
        if reader is None:
            return None
        try:
            line = await reader.readline()
            notice = json.loads(line) if line else None
        except (ValueError, OSError):
            notice = None
        if not isinstance(notice, dict):
            self.close_notices()
            return None
        return notice

    def close_notices(self) -> None:
        transport, self._notices_transport, self._notices = self._notices_transport, None, None
        if transport is not None:
            transport.close()

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
        if self._exited is None or self._signal is None:
            return None
        try:
            self.close_notices()
            if self._stdin is not None and not self._stdin.closed:
                try:
                    self._stdin.close()
                except OSError:
                    pass
            code = await self._wait(grace + 2.0)
            if code is None:
                self._signal(signal.SIGTERM)
                code = await self._wait(2.0)
            if code is None:
                return await self.kill()
            return code
        except BaseException:
            await asyncio.shield(self.kill())
            raise

    async def kill(self) -> int | None:
        if self._exited is None or self._signal is None:
            return None
        if not self._exited.done():
            self._signal(signal.SIGKILL)
        return await self._wait(10.0)
