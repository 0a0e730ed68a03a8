"""Affinity: `wool.options(affinity=key)` sends every call with a key to one worker by
rendezvous hashing. The placement function is tested without sockets (key movement when
workers leave and join); real workers show that calls honour it, nested calls inherit it, and
a worker's departure moves only its own keys."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import routines
import tree

import wool
from wool.caller._affinity import key_digest, place

WORKERS = [uuid.uuid4().hex for _ in range(4)]
KEYS = [f"account-{i}" for i in range(1000)]


def assignment(workers: list[str]) -> dict[str, str]:
    return {key: place(key_digest(key), workers) for key in KEYS}


def test_removing_one_of_four_workers_moves_only_its_own_keys() -> None:
    before = assignment(WORKERS)
    gone = WORKERS[2]
    after = assignment([w for w in WORKERS if w != gone])
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == gone}
    # and the four workers shared the keys about evenly (250 each expected)
    counts = [sum(1 for w in before.values() if w == worker) for worker in WORKERS]
    assert all(180 <= c <= 320 for c in counts), counts


def test_a_joining_worker_takes_keys_only_for_itself() -> None:
    before = assignment(WORKERS)
    newcomer = uuid.uuid4().hex
    after = assignment([*WORKERS, newcomer])
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved and all(after[key] == newcomer for key in moved)


def test_placement_does_not_depend_on_the_order_of_workers() -> None:
    assert assignment(WORKERS) == assignment(list(reversed(WORKERS)))


@pytest.mark.parametrize("key", [["a", "list"], {"a": 1}])
def test_an_unhashable_key_is_refused_at_the_block(key: object) -> None:
    with pytest.raises(TypeError, match="an affinity key must be hashable, not"):
        with wool.options(affinity=key):
            pass


def test_an_unpicklable_key_is_refused_at_the_block() -> None:
    with pytest.raises(TypeError, match="an affinity key must be picklable"):
        with wool.options(affinity=lambda: None):
            pass


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_calls_with_a_key_go_to_its_worker_and_only_a_lost_workers_keys_move() -> None:
    async with wool.WorkerPool(size=3) as pool:
        by_id = {w.id: w.pid for w in pool.workers}
        keys = [f"desk-{i}" for i in range(30)]
        where: dict[str, int] = {}
        for key in keys:
            with wool.options(affinity=key):
                pids = {await routines.pid() for _ in range(3)}
                nested = set(await tree.fan_out_pids(3))  # the routine's own calls inherit the key
            expected = by_id[place(key_digest(key), list(by_id))]
            assert pids == nested == {expected}, key
            where[key] = expected
        assert len(set(where.values())) == 3  # the keys are spread over all the workers

        victim = pool.processes[0]
        assert victim.info is not None
        await victim.stop(pool.grace)
        await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=20)
        for key in keys:
            with wool.options(affinity=key):
                now = await routines.pid()
            if where[key] != victim.pid:
                assert now == where[key], key  # not the lost worker's: stays
            else:
                assert now != victim.pid


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
async def test_affinity_none_clears_the_key_and_calls_spread_again() -> None:
    async with wool.WorkerPool(size=2) as pool:
        with wool.options(affinity="one"):
            with wool.options(affinity=None):
                pids = set(await asyncio.gather(*(routines.pid() for _ in range(8))))
        assert pids == {w.pid for w in pool.workers}
