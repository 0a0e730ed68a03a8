"""What the mesh tells a user about workers it will not use: the words, apart from the logic.

Pure: each function takes what the mesh knows and returns the text of a warning or of a
`NoWorkersAvailable`, so that what a user reads can be checked without any worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .._info import WorkerInfo
from .._keys import Keys


def why_ignored(keys: Keys | None, worker: WorkerInfo) -> str | None:
    """Why `worker` is not to be connected to by a process with `keys`; None if it may be."""
    where = f"worker {worker.id!r} at {worker.endpoint!r}"
    if keys is None:
        if worker.public_key is None:
            return None
        return f"{where} requires CURVE keys and this process has none; ignoring it (open the pool with keys= to use it)"
    if worker.public_key is None:
        return f"{where} has no CURVE key and this process only uses workers with keys; ignoring it"
    if keys.trusts(worker.public_key):
        return None
    return (
        f"{where} publishes the public key {worker.public_key!r}, which this process does not trust; "
        "ignoring it (discovery is only a hint: trust its key to use it)"
    )


def describe_empty(
    where: str,
    tags: frozenset[str],
    rotation: Sequence[WorkerInfo],
    lost: int,
    refusing: Iterable[WorkerInfo],
    failed: Iterable[str],
    ignored: Mapping[str, str],
) -> str:
    """Why no worker can take a call needing `tags`: the workers in `rotation` lack them, or
    there are none (`lost` of them lost, `refusing` connections, `failed` handshakes, `ignored`
    for their keys). `where` names the discovery followed ("" if none)."""
    where = f" in {where}" if where else ""
    if tags and rotation:
        seen = sorted({", ".join(repr(t) for t in sorted(w.tags)) or "no tags" for w in rotation})
        return (
            f"no live worker has the tags {', '.join(sorted(tags))}{where}: {len(rotation)} live workers have {'; '.join(seen)}"
        )
    if tags:
        where = f" with the tags {', '.join(sorted(tags))}{where}"
    lost_ = f" ({lost} lost)" if lost else ""
    refused = [f"{w.id!r} at {w.endpoint!r}" for w in refusing]
    refusing_ = f"; refusing connections: {', '.join(refused)}" if refused else ""
    failures = list(failed)
    failed_ = f"; {'; '.join(failures)}" if failures else ""
    ignored_ = f"; {len(ignored)} ignored for their keys ({next(iter(ignored.values()))})" if ignored else ""
    return f"no live workers{where}{lost_}{refusing_}{failed_}{ignored_}"
