"""The physical floor of a round trip between two processes, measured beside wool.

    python -m benchmarks.floor zmq IPC_ENDPOINT     (the server end; started by `Floors`)
    python -m benchmarks.floor pipe READ_FD WRITE_FD

Three echo servers a 40-byte message goes through and back, with no event loop, no envelope
and no pickling on either end:

- `zmq`: a blocking DEALER in this process, a blocking ROUTER in the server, over `ipc://`
  (wool's default transport): what libzmq's hand-off to its I/O threads costs by itself.
- `spin`: the same server, this process spinning on `NOBLOCK` receives instead of sleeping
  in the kernel: the floor a caller that never sleeps can reach.
- `pipe`: an `os.pipe` pair each way, blocking reads and writes: the kernel's own floor.

The calls block this process's event loop for the length of one round trip, which is the
point: nothing else may run. The servers exit when their stdin closes, so they never outlive
the benchmark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

MESSAGE = 40  # bytes each way, as in the table
_ROOT = str(Path(__file__).resolve().parent.parent)


def _start(args: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.floor", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        pass_fds=pass_fds,
    )


def _ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"floor server exited before serving (code {proc.poll()})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            stream.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Floors:
    """The three floors' client ends, opened once, each call one round trip returning `i + 1`
    (so that the latency workload's checks hold for them too)."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="wool-floor-")  # 0700: private to this user
        endpoint = f"ipc://{self._dir}/floor"
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._procs: list[subprocess.Popen[bytes]] = []
        self._pipes: list[int] = []
        try:
            self._procs.append(_start(["zmq", endpoint]))
            _ready(self._procs[-1])
            self._sock: zmq.Socket[Any] = self._ctx.socket(zmq.DEALER)
            self._sock.linger = 0
            self._sock.connect(endpoint)
            to_server, from_me = os.pipe()
            to_me, from_server = os.pipe()
            self._pipes = [to_server, from_me, to_me, from_server]
            self._procs.append(_start(["pipe", str(to_server), str(from_server)], pass_fds=(to_server, from_server)))
            _ready(self._procs[-1])
            self._write, self._read = from_me, to_me
            self._payload = bytearray(MESSAGE)
            for i in range(50):  # connect and warm both paths
                self.zmq(i)
                self.pipe(i)
        except BaseException:
            self.close()
            raise

    def _check(self, reply: bytes, i: int) -> int:
        if len(reply) != MESSAGE or int.from_bytes(reply[:8], "little") != i:
            raise AssertionError("the floor server echoed something else")
        return i + 1

    def _message(self, i: int) -> bytes:
        self._payload[:8] = i.to_bytes(8, "little")
        return bytes(self._payload)

    def zmq(self, i: int) -> int:
        """Blocking send, blocking receive."""
        self._sock.send(self._message(i))
        return self._check(self._sock.recv(), i)

    def spin(self, i: int) -> int:
        """Blocking send, then `NOBLOCK` receives until the reply is there."""
        sock = self._sock
        sock.send(self._message(i))
        deadline = time.monotonic() + 5.0
        while True:
            try:
                return self._check(sock.recv(zmq.NOBLOCK), i)
            except zmq.Again:
                if time.monotonic() > deadline:
                    raise TimeoutError("the floor server did not answer within 5 s") from None

    def pipe(self, i: int) -> int:
        os.write(self._write, self._message(i))
        reply = b""
        while len(reply) < MESSAGE:
            chunk = os.read(self._read, MESSAGE - len(reply))
            if not chunk:
                raise RuntimeError("the pipe floor server exited")
            reply += chunk
        return self._check(reply, i)

    def close(self) -> None:
        if hasattr(self, "_sock"):
            self._sock.close(linger=0)
        for fd in self._pipes:
            os.close(fd)
        self._pipes = []
        for proc in self._procs:
            _stop(proc)
        self._procs = []
        self._ctx.term()
        shutil.rmtree(self._dir, ignore_errors=True)


# -- the server ends --


def _exit_when_stdin_closes() -> None:
    while os.read(0, 4096):
        pass
    os._exit(0)


def _serve_zmq(endpoint: str) -> None:
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(endpoint)
    print("ready", flush=True)
    while True:
        ident, body = sock.recv_multipart()
        sock.send_multipart([ident, body])


def _serve_pipe(read_fd: int, write_fd: int) -> None:
    print("ready", flush=True)
    while True:
        data = os.read(read_fd, MESSAGE)
        if not data:
            os._exit(0)
        os.write(write_fd, data)


if __name__ == "__main__":
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    if sys.argv[1:2] == ["zmq"] and len(sys.argv) == 3:
        _serve_zmq(sys.argv[2])
    elif sys.argv[1:2] == ["pipe"] and len(sys.argv) == 4:
        _serve_pipe(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: python -m benchmarks.floor zmq IPC_ENDPOINT | pipe READ_FD WRITE_FD")
