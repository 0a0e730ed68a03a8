"""Whether the process that answered on a new connection is the worker discovery described
(pure: no I/O).

Theory of operation. Discovery says where a worker listens and which incarnation it is; both
are hints that whoever can write a registry, announce a record or take over an endpoint can
forge (an incarnation id proves nothing: whoever reads the registry can repeat it). What an
impostor cannot pass depends on the connection:

- With keys, the CURVE handshake proves that the peer holds the secret key of the public key
  discovery published; ZeroMQ delivers nothing before it has. Nothing more is asked.
- Without keys, over `ipc://`, the kernel vouches: ZeroMQ attaches to each message the
  credentials of the process at the other end of the socket (`SO_PEERCRED`: uid, gid, pid,
  taken when it started listening), and only this user (and root) can run a process of this
  user's. So such a connection, before any call, pings the worker (its hello) and checks the
  first reply: it must come from a process of this user's, and be the pong naming the
  incarnation discovery listed (another one, a worker restarted at that endpoint, is not the
  worker described: lost, not refused). A socket another user bound in the worker's place
  (after renaming its directory away) is told apart whatever it answers, and gets nothing but
  the hello. Such a connection also checks the socket's directory and owner before each
  connect attempt, and never reconnects by itself, so the one peer it talks to is the one
  checked.
- Without keys over `tcp://` (only with `insecure=True`), nothing: whoever holds the port.
"""

from __future__ import annotations

import dataclasses

from .. import protocol as p
from .._info import WorkerInfo


@dataclasses.dataclass(frozen=True, slots=True)
class Mismatch:
    """Why a connection's peer is not the worker discovery described. `refused`: it is not
    to be trusted at all (do not try it again); else it is another incarnation (lost)."""

    reason: str
    refused: bool


def peer_uid(peer_address: str | None) -> int | None:
    """The uid in ZeroMQ's `Peer-Address` of an `ipc://` connection (`host:uid:gid:pid` on
    Linux), or None if it holds none."""
    if not peer_address:
        return None
    parts = peer_address.rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return int(parts[1])


def peer_mismatch(worker: WorkerInfo, peer_address: str | None, uid: int) -> Mismatch | None:
    """None if the process at the other end of an `ipc://` connection runs as `uid` (this
    user), else why it is refused."""
    found = peer_uid(peer_address)
    where = f"worker {worker.id!r} (pid {worker.pid}) at {worker.endpoint!r}"
    if found is None:
        return Mismatch(
            f"cannot tell which user listens at {worker.endpoint!r} (ZeroMQ gave no peer credentials: {peer_address!r}), "
            f"so {where} is not trusted; use keys (WorkerPool(keys=DIR)) on this platform",
            True,
        )
    if found != uid:
        return Mismatch(
            f"the process listening at {worker.endpoint!r} runs as uid {found}, not as this user (uid {uid}): "
            f"another user put a socket in place of {where}; nothing was sent to it. Check who can write to the "
            "directories above the runtime directory (WOOL_RUNTIME_DIR)",
            True,
        )
    return None


def hello_mismatch(worker: WorkerInfo, reply: p.Request | p.Reply, hello_id: int | None) -> Mismatch | None:
    """None if `reply`, the first message on a connection, is the pong to its hello
    (`hello_id`) from the incarnation discovery listed."""
    where = f"worker {worker.id!r} (pid {worker.pid}) at {worker.endpoint!r}"
    if hello_id is None or not isinstance(reply, p.Pong) or reply.call_id != hello_id:
        return Mismatch(f"{where} answered with a {reply.kind.name.lower()} before its hello: it is no wool worker", True)
    if reply.worker_id != worker.id:
        return Mismatch(
            f"{where} was not there: worker {reply.worker_id!r} answered in its place (restarted at that endpoint?)",
            False,
        )
    return None
