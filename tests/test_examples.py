"""The examples, run as a user runs them: `python examples/X.py`, with no `__main__` guard."""

from __future__ import annotations

import os
import subprocess
import sys

import helpers
import pytest

pytestmark = pytest.mark.multiprocess

EXAMPLES = helpers.REPO / "examples"


def run(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # The checkout's wool, whether or not (and however) it is installed in this environment.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(helpers.REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=timeout, cwd=helpers.REPO, env=env
    )


def test_quickstart_prints_3() -> None:
    done = run("quickstart.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3\n"


def test_guessing_game_finds_z() -> None:
    done = run("guessing.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "guess: z"


def test_fanout() -> None:
    done = run("fanout.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{sum(i * i for i in range(1_000_000))}\n"


def test_context_variables_follow_calls() -> None:
    done = run("context.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[req-42] apple: 7.50",
        "[req-42] fig: 4.50",
        "hops: quote -> price(apple) -> price(fig)",
        "[req-1] kiwi: 6.00",
        "[req-2] kiwi: 6.00",
        "still req-42",
    ]


def test_deadlines_reach_the_whole_tree() -> None:
    done = run("deadlines.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "three levels down, the deadline is still there: True",
        "timed out: the deepest call was cancelled and cleaned up",
    ]
    assert "WARNING" not in done.stderr


def test_placement_by_tags() -> None:
    done = run("placement.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "render ran on: gpu",
        "untagged calls ran on: gpu, untagged",
        "nested calls under options(tags='gpu') ran on: gpu",
    ]
    assert lines[3].startswith("train: train was not called: no live worker has the tags tpu")


async def test_durable_pool_over_workers_started_by_hand() -> None:
    async with helpers.CliWorker("--discovery", "local:desk") as a, helpers.CliWorker("--discovery", "local:desk") as b:
        done = run("durable_pool.py")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 4
        assert {line.rsplit(" ", 1)[1] for line in lines} <= {str(a.pid), str(b.pid)}
        for worker in (a, b):
            worker.signal()
            assert await worker.wait() == 0


def test_durable_pool_without_workers_says_how_to_start_them() -> None:
    done = run("durable_pool.py")
    assert done.returncode == 1
    assert "python -m wool.worker --discovery local:desk" in done.stderr


def test_script_routine_defined_in_main_with_python_c() -> None:
    code = (
        "import asyncio, wool\n"
        "@wool.routine\n"
        "async def shout(s):\n"
        "    return s.upper()\n"
        "async def main():\n"
        "    async with wool.WorkerPool(size=1):\n"
        "        print(await shout('hi'))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "HI\n"


def test_lifespan_loads_state_once_per_worker_and_a_failure_says_why() -> None:
    done = run("lifespan.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "100 EUR = 108.0 USD",
        "100 EUR = 85.0 GBP",
        "100 EUR = 100.0 EUR",
        "100 EUR = 108.0 USD",
        "each call read its own worker's state: True",
        "the pool did not start: FileNotFoundError: rates.csv not found",
    ]


def test_broadcast_reaches_every_worker_and_keeps_each_answer() -> None:
    done = run("broadcast.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "reloaded on 3 workers, keyed by worker id: True",
        "versions now: [7, 7, 7]",
        """checks: ["'ok'", "'ok'", "RuntimeError('disk full')"]""",
    ]


def test_map() -> None:
    done = run("map.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"sum of squares below 10,000: {sum(x * x for x in range(10_000))}",
        "first five squares: [0, 1, 4, 9, 16]",
        "in completion order, all of: [1, 4, 9]",
        "stopped: item 13 is unlucky",
    ]
