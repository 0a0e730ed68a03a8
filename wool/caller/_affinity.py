"""Affinity placement: rendezvous (highest random weight) hashing of a key over worker ids.

Pure: no sockets, no loop. Each (key, worker) pair gets a pseudo-random score and a key goes
to the worker scoring highest among the candidates. A worker leaving moves only the keys it
held (each to its own runner-up); a worker joining takes only the keys it now scores highest
for (about 1/N of them); the others never move. No ring, no virtual nodes, no state to keep
in step between callers: every process computes the same answer from the same ids.

A key is hashed by its pickle (protocol 4, which is deterministic for the usual keys: str,
bytes, int, float, tuples and frozensets of them), so two keys land together when they
pickle alike: `1` and `True` do not, `"a"` in two processes does.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Hashable, Sequence
from typing import TypeVar

from ._loadbalancer import Candidate

DIGEST_SIZE = 16
C = TypeVar("C", bound=Candidate)


def key_digest(key: Hashable) -> bytes:
    """The digest an affinity key travels as. `TypeError` names a key that is not hashable
    or cannot be pickled."""
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"an affinity key must be hashable, not {type(key).__name__}") from None
    try:
        data = pickle.dumps(key, protocol=4)
    except Exception as e:
        raise TypeError(f"an affinity key must be picklable: {type(e).__name__}: {e}") from None
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def score(digest: bytes, worker_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(worker_id.encode(), key=digest, digest_size=8).digest(), "big")


def place(digest: bytes, worker_ids: Sequence[str]) -> str:
    """The worker id among `worker_ids` (not empty) that the key with `digest` goes to."""
    return max(worker_ids, key=lambda worker_id: (score(digest, worker_id), worker_id))


class Affinity:
    """A load balancer that always picks the key's worker among the candidates."""

    __slots__ = ("digest",)

    def __init__(self, digest: bytes) -> None:
        self.digest = digest

    def choose(self, candidates: Sequence[C]) -> C:
        best = place(self.digest, [c.worker.id for c in candidates])
        return next(c for c in candidates if c.worker.id == best)
