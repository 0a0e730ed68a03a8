"""Smoke test of the soak run: a few seconds of its mixed traffic, with a worker killed, end
with no duplicated call and no failure the at-most-once rules do not allow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.multiprocess
@pytest.mark.timeout(180)
def test_a_short_soak_duplicates_nothing_and_fails_only_calls_on_killed_workers(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "soak.py"), "--soak-seconds", "8", "--kill-every", "3", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["calls_made"] > 0 and result["duplicated"] == 0 and result["unexpected_count"] == 0
    assert result["workers_killed"] >= 1
    assert result["samples"] and result["latency_per_minute"]
