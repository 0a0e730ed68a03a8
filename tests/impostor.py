"""Another local user posing as a worker: a process with a uid of its own that listens on
an `ipc://` path where a caller expects one of its workers, answers a ping with a pong naming
that worker's real incarnation id (which a registry reader knows), and answers a call with a
`return` whose pickle, once unpickled by the caller, writes a marker file (code execution in
the caller). Optionally it first renames a directory away and rebuilds the path below a
directory of its own (the rename-and-rebind attack). It reports the kind of every message it
receives, so a test can tell whether a call, with its arguments, ever reached it.

As in `attack`, the impostor is a forked child that drops to the other uid: it uses only
modules imported before the fork and a zmq context of its own, and leaves with `os._exit`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import warnings
from pathlib import Path
from typing import Any

import zmq

from wool import protocol as p

WAIT_S = 20.0  # the longest an impostor listens before leaving by itself


class _Payload:
    """Unpickles into a marker file written by the caller."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').write('impostor code ran')",))


def _serve(socket_path: Path, worker_id: str, marker: str, rename: tuple[Path, Path] | None, report: int, stop: int) -> None:
    os.umask(0)
    if rename is not None:
        os.rename(*rename)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(f"ipc://{socket_path}")
    os.write(report, b"ready\n")
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(stop, zmq.POLLIN)
    payload = p.dumps(_Payload(marker))
    while True:
        ready = dict(poller.poll(int(WAIT_S * 1000)))
        if not ready or stop in ready:
            break
        identity, *frames = router.recv_multipart()
        try:
            msg = p.decode(frames)
        except p.ProtocolError:
            os.write(report, b"malformed\n")
            continue
        os.write(report, f"{msg.kind.name.lower()}\n".encode())
        if isinstance(msg, p.Ping):
            router.send_multipart([identity, *p.encode(p.Pong(msg.call_id, worker_id))])
        elif isinstance(msg, p.Call):
            router.send_multipart([identity, *p.encode(p.Return(msg.call_id, payload))])
    router.close(linger=0)
    ctx.term()


class Impostor:
    """An impostor process running as `uid` (see the module docstring): `async with` starts
    it and returns once it listens at `socket_path`; leaving stops it. `received` is the kind
    of each message it got, in order."""

    def __init__(
        self, uid: int, socket_path: Path, worker_id: str, marker: Path, rename: tuple[Path, Path] | None = None
    ) -> None:
        self.uid = uid
        self.socket_path = socket_path
        self.worker_id = worker_id
        self.marker = str(marker)
        self.rename = rename
        self._lines: list[str] = []
        self._pid = 0
        self._stop = -1
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.BaseTransport | None = None

    @property
    def received(self) -> list[str]:
        return [line for line in self._lines if line != "ready"]

    async def __aenter__(self) -> Impostor:
        report_r, report_w = os.pipe()
        stop_r, stop_w = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # forking with zmq's threads: see `attack`
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                gc.disable()  # never finalize the parent's objects (its zmq sockets) here
                os.close(report_r)
                os.close(stop_w)
                os.setgroups([])
                os.setgid(self.uid)
                os.setuid(self.uid)
                _serve(self.socket_path, self.worker_id, self.marker, self.rename, report_w, stop_r)
                code = 0
            except BaseException as e:
                os.write(report_w, f"error {e!r}\n".encode())
            finally:
                os._exit(code)
        os.close(report_w)
        os.close(stop_r)
        self._pid, self._stop = pid, stop_w
        loop = asyncio.get_running_loop()
        self._reader = asyncio.StreamReader()
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self._reader), os.fdopen(report_r, "rb", 0)
        )
        try:
            line = await asyncio.wait_for(self._reader.readline(), WAIT_S)
        except BaseException:
            await self._finish()
            raise
        if line != b"ready\n":
            await self._finish()
            raise AssertionError(f"the impostor did not start: {line!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._finish()

    async def _finish(self) -> None:
        os.close(self._stop)  # end-of-file: the impostor leaves
        assert self._reader is not None and self._transport is not None
        try:
            rest = await asyncio.wait_for(self._reader.read(), WAIT_S)
        except TimeoutError:
            os.kill(self._pid, signal.SIGKILL)
            rest = b""
        finally:
            self._transport.close()
            os.waitpid(self._pid, 0)
        self._lines += rest.decode().split()
