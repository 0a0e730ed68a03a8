"""Smoke test of the benchmark suite: `--quick` runs every workload end to end and writes
numeric results. It never asserts on ratios or timings, which belong to the machine."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import wool

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = [
    "startup",
    "tracing",
    "scale",
    "simulation",
    "latency_spin",
    "latency",
    "throughput",
    "fanout",
    "finegrain",
    "stream",
    "stream_readahead",
    "payload",
    "memory",
    "hedge",
    "share",
]
BASELINES = {
    "startup": {"loop", "ppe"},
    "tracing": {"untraced"},
    "scale": set(),  # wool alone, against N
    "simulation": set(),
    "finegrain": {"ppe"},
    "latency_spin": {"zmq", "spin", "pipe"},
    "latency": {"loop", "ppe", "zmq", "spin", "pipe"},
    "throughput": {"loop", "ppe"},
    "fanout": {"loop", "ppe"},
    "stream": {"loop", "ppe", "push"},
    "stream_readahead": {"push"},
    "payload": {"loop", "ppe", "raw"},
    "memory": {"loop", "ppe"},
    "hedge": {"unhedged"},
    "share": {"resident", "value"},
}


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.multiprocess
@pytest.mark.timeout(300)
def test_quick_run_reports_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    plots = tmp_path / "plots"
    plotting = importlib.util.find_spec("matplotlib") is not None  # the optional wool[plot] extra
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--json",
            str(out),
            *(["--plot", str(plots)] * plotting),
        ],
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    assert {"cpu_count", "cpu_model", "python", "pyzmq", "libzmq"} <= set(doc["machine"])
    assert list(doc["workloads"]) == WORKLOADS
    for name, workload in doc["workloads"].items():
        if name == "stream_readahead" and not hasattr(wool, "readahead"):
            assert workload["status"] == "skipped"
            continue
        assert workload["status"] == "ok", (name, workload.get("reason"))
        results = workload["results"]
        assert {"wool", *BASELINES[name]} <= set(results), name
        for value in results["wool"].values():
            assert _numeric(value), (name, results["wool"])
        for side in BASELINES[name]:
            assert any(_numeric(v) for v in results[side].values()), (name, side, results[side])
        for target in workload["targets"]:
            assert _numeric(target["value"]) and isinstance(target["holds"], bool), (name, target)
    if plotting:
        assert sorted(p.name for p in plots.iterdir()) == ["ratios.png", "scale.png"]
        assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots.iterdir())


@pytest.mark.multiprocess
@pytest.mark.timeout(120)
def test_transport_comparison_runs_both_sides() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "transports.py"), "--rounds", "1", "--quick"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["ipc", "tcp"]
    (ratios,) = [line for line in lines if line.startswith("ipc/tcp ")]
    assert [word for word in ratios.split() if word.endswith("x")] != []
    assert {"latency_us", "calls_per_s", "payload_mb_per_s"} <= set(ratios.split())


@pytest.mark.multiprocess
@pytest.mark.timeout(120)
def test_hostile_context_benchmark_runs_and_the_worker_refuses_the_100000_key_frame() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "hostile_context.py"), "--calls", "20", "--frames", "3", "--keys", "10"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["before", "hostile", "after", "after/before median"], lines
    assert "{'return': 3, 'raise': 1}" in lines[1]


@pytest.mark.multiprocess
@pytest.mark.timeout(120)
def test_blocking_call_benchmark_reports_both_sides_and_the_difference() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "blocking_call.py"), "--calls", "20", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["blocking", "await", "hand-off", "blocking - await"]
    assert "over 40 calls" in lines[0] and "per call at the median" in lines[3]
