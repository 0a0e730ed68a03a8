"""Another local user attacking a worker: a process with a uid of its own finds the worker's
endpoint where every user can read it (`/proc/net/unix`, `/proc/net/tcp`), connects with
ZeroMQ, asks the worker's incarnation id with a `ping`, and sends a well-formed `call` built
with `wool.protocol` of a routine that writes a marker file, as wool's own callers would.

The attacker is a forked child that drops to the other uid (groups, gid, then uid): the
interpreter lives under /root, which other users cannot read, so a fresh process of theirs
could not even start Python. The child uses only modules imported before the fork and its
own zmq context, never the parent's, and leaves with `os._exit`. Everything it needs that
could import more (pickling the routine) is done before the fork.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import json
import os
import pwd
import socket
import warnings
from typing import Any

import cloudpickle
import zmq
import zmq.utils.monitor

from wool import protocol as p

# Defined as in the attacker's own script (its `__main__`), so that it travels by value.
_SOURCE = """
async def pwn(marker):
    import os
    with open(marker, "w") as f:
        f.write(str(os.getuid()))
    return os.getuid()
"""
_namespace: dict[str, Any] = {"__name__": "__main__"}
exec(_SOURCE, _namespace)
pwn = _namespace["pwn"]

WAIT_MS = 10_000  # a bound on each step; a reachable worker answers within milliseconds


def unused_uid() -> int:
    """A uid (and gid) no account or process of this machine has."""
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                taken.add(os.stat(f"/proc/{pid}").st_uid)
            except OSError:
                pass
    return next(uid for uid in range(61_000, 65_000) if uid not in taken)


def listed(endpoint: str) -> bool:
    """Whether `endpoint` shows in the world-readable socket tables."""
    if endpoint.startswith("ipc://"):
        with open("/proc/net/unix") as f:
            return any(line.split()[-1] == endpoint[len("ipc://") :] for line in f if len(line.split()) >= 8)
    port = int(endpoint.rpartition(":")[2])
    with open("/proc/net/tcp") as f, open("/proc/net/tcp6") as f6:
        rows = [*f.readlines()[1:], *f6.readlines()[1:]]  # each table has one header line
    return any(int(row.split()[1].rpartition(":")[2], 16) == port for row in rows)


def raw_connect(endpoint: str) -> int:
    """0 if a plain socket connects to `endpoint`, else the errno."""
    if endpoint.startswith("ipc://"):
        family: int = socket.AF_UNIX
        address: Any = endpoint[len("ipc://") :]
    else:
        host, _, port = endpoint[len("tcp://") :].rpartition(":")
        family, address = (socket.AF_INET6 if ":" in host else socket.AF_INET), (host.strip("[]"), int(port))
    with socket.socket(family) as sock:
        try:
            sock.connect(address)
        except OSError as e:
            return e.errno or -1
    return 0


def _ask(sock: zmq.Socket[Any], msg: p.Request) -> p.Message | None:
    sock.send_multipart(p.encode(msg))
    if sock.poll(WAIT_MS):
        return p.decode(sock.recv_multipart())
    return None


def attack(endpoint: str, marker: str) -> dict[str, Any]:
    """The attack itself (run by the child): what happened at each step."""
    routine = cloudpickle.dumps(pwn, protocol=5)
    digest = hashlib.blake2b(routine, digest_size=16).digest()
    arguments = p.dumps(((marker,), {}))
    result: dict[str, Any] = {"uid": os.getuid(), "listed": listed(endpoint), "connect_errno": raw_connect(endpoint)}
    result.update(connected=False, pong=None, reply=None, returned=None)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED)
        sock.connect(endpoint)
        if monitor.poll(WAIT_MS):  # connected, or refused (libzmq then retries later)
            result["connected"] = zmq.utils.monitor.recv_monitor_message(monitor)["event"] == zmq.EVENT_CONNECTED
        if result["connected"]:
            pong = _ask(sock, p.Ping(1))
            if isinstance(pong, p.Pong):
                result["pong"] = pong.worker_id
                reply = _ask(sock, p.Call(2, pong.worker_id, digest, "pwn", False, routine, arguments))
                result["reply"] = type(reply).__name__ if reply is not None else None
                if isinstance(reply, p.Return):
                    result["returned"] = p.loads(reply.payload)
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
    finally:
        ctx.term()
    return result


async def attack_as(uid: int, endpoint: str, marker: str) -> dict[str, Any]:
    """Run `attack` in a child with `uid` (and gid `uid`, no supplementary groups); its
    report, once it has exited."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns on forking a process with threads (zmq's here): the child
        # only uses its own context and the modules already loaded, then `_exit`s.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the attacker
        code = 1
        try:
            gc.disable()  # never finalize the parent's objects (its zmq sockets) here
            os.close(read_fd)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            report = attack(endpoint, marker)
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        except BaseException as e:
            os.write(write_fd, json.dumps({"error": repr(e)}).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
    try:
        data = await asyncio.wait_for(reader.read(), 4 * WAIT_MS / 1000)
    finally:
        transport.close()
        pidfd = os.pidfd_open(pid)
        exited = loop.create_future()
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await asyncio.wait_for(exited, 10)
        except TimeoutError:
            os.kill(pid, 9)
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        os.waitpid(pid, 0)
    report: dict[str, Any] = json.loads(data)
    assert "error" not in report, f"the attacker failed: {report['error']}"
    assert report["uid"] == uid
    return report


EACCES = errno.EACCES
