"""The worker template: one pre-imported process that forks a pool's workers.

Starting a worker as a fresh `python -m wool.worker` costs an interpreter start and the
imports of wool, zmq, cloudpickle and uvloop, about 0.25 s of CPU each: 32 workers on two
cores took about 3 s. A pool therefore starts one template, `python -m wool.worker
--template FD`, which pays that once and then forks a child per requested worker (a few
milliseconds each). The template never creates a ZeroMQ context, starts a thread, or runs an
event loop, so forking it is safe; it never imports the caller's `__main__` either, so a
user's script still runs once, guard or no guard.

Protocol, on the SOCK_SEQPACKET socket `FD` shared with the pool (one message per packet):
- pool -> template: `spawn`, carrying two descriptors (SCM_RIGHTS): the read end of the
  worker's stdin pipe (its config, then its lifeline) and the write end of its ready pipe;
- template -> pool: `pid N` for each spawn, in order, once forked; `exit N CODE` when that
  child has exited (CODE as `Popen.returncode`: negative for a signal).
The child puts the stdin pipe on its fd 0 and runs exactly what a worker started with
`--spawned` runs: so the lifeline, the handshake and start-up errors behave the same. The
template exits when the pool closes the socket or dies; the workers it forked stop by
themselves when their own stdin closes. Should the pool be killed outright, the kernel kills
the template, and each worker's watch of the pool's process kills a worker that does not
stop (see `_lifeline`).
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable

MAX_PACKET = 64
OUTLIVE = 15.0  # seconds the template waits for its workers once its pool is gone


def exit_code(status: int) -> int:
    """A `waitpid` status as `Popen.returncode` gives it."""
    return os.waitstatus_to_exitcode(status)


def serve_template(control_fd: int, run_child: Callable[[int], int]) -> int:
    """Serve spawn requests on `control_fd` until it closes; each child runs
    `run_child(ready_fd)` with its stdin in place, and exits with what it returns."""
    control = socket.socket(fileno=control_fd)
    control.setblocking(True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd hears of it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the pool's to handle
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    children: set[int] = set()
    try:
        while True:
            for key, _ in selector.select():
                if key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    _reap(control, children)
                    continue
                try:
                    message, fds, _, _ = socket.recv_fds(control, MAX_PACKET, 2)
                except OSError:
                    message, fds = b"", []
                if not message:  # the pool closed the socket, or died
                    _outlive(children)
                    return 0
                if message != b"spawn" or len(fds) != 2:
                    for fd in fds:
                        os.close(fd)
                    print(f"wool worker template: ignoring a bad request {message!r}", file=sys.stderr)
                    continue
                stdin_fd, ready_fd = fds
                pid = os.fork()
                if pid == 0:
                    _child(control, selector, (wake_r, wake_w), stdin_fd, ready_fd, run_child)
                os.close(stdin_fd)
                os.close(ready_fd)
                children.add(pid)
                control.sendall(f"pid {pid}".encode())
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        signal.set_wakeup_fd(-1)
        selector.close()
        control.close()  # else a ResourceWarning at exit, shown under `-W default`
        os.close(wake_r)
        os.close(wake_w)


def _reap(control: socket.socket | None, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        if control is not None:
            control.sendall(f"exit {pid} {exit_code(status)}".encode())


def _outlive(children: set[int]) -> None:
    """After the pool left: wait (a bounded time) for the workers still running, which stop
    by themselves as their stdin closes, so that none is left to init while stopping."""
    deadline = time.monotonic() + OUTLIVE
    while children and time.monotonic() < deadline:
        _reap(None, children)
        if children:
            time.sleep(0.01)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap(None, children)


def _child(
    control: socket.socket,
    selector: selectors.BaseSelector,
    wake: tuple[int, int],
    stdin_fd: int,
    ready_fd: int,
    run_child: Callable[[int], int],
) -> None:
    """In the forked child: drop the template's state, become a spawned worker, never return."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        selector.close()
        control.close()
        for fd in wake:
            os.close(fd)
        os.dup2(stdin_fd, 0)
        os.close(stdin_fd)
        random.seed()  # not the template's sequence, shared by every sibling
        code = run_child(ready_fd)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
