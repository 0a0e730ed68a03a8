"""`--plot DIR`: PNG charts of a run, with matplotlib (`pip install wool[plot]`).

- `ratios.png`: every workload's ratios wool/baseline, one bar per metric and baseline, with
  1.0 marked (which side of it is better depends on the metric, as the label says);
- `scale.png`: the `scale` workload's curves against the number of workers N: time to ready,
  idle CPU of all workers, descriptors and RSS per worker.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .results import BASELINES, WorkloadResult

SCALE_CURVES = [
    ("ready_s", "ready in (s)"),
    ("idle_cpu_pct", "idle CPU, all workers (% of a core)"),
    ("fds_per_worker", "descriptors per worker"),
    ("rss_mb_per_worker", "RSS per worker (MB)"),
]


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'wool[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot(results: Sequence[WorkloadResult], directory: Path) -> list[Path]:
    """Write the charts the results allow into `directory`; return their paths."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    done = [r for r in results if not (r.skipped or r.error)]
    bars = [
        (f"{r.name} {m.name} vs {b} ({'higher' if m.higher_is_better else 'lower'} is better)", ratio)
        for r in done
        for m in r.metrics
        if m.ratio
        for b in BASELINES
        if (ratio := r.ratio(b, m.name)) is not None
    ]
    if bars:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(bars)), 6.0))
        ax.bar(range(len(bars)), [v for _, v in bars], color="#4c72b0")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(bars)), [label for label, _ in bars], fontsize=7, rotation=40, ha="right")
        ax.set_ylabel("wool / baseline")
        ax.set_title("wool against its baselines, same run")
        fig.tight_layout()
        written.append(directory / "ratios.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    scale = next((r for r in done if r.name == "scale"), None)
    if scale is not None:
        fig, axes = plt.subplots(1, len(SCALE_CURVES), figsize=(3.2 * len(SCALE_CURVES), 3.0))
        for ax, (prefix, label) in zip(axes, SCALE_CURVES, strict=True):
            points = sorted(
                (int(match.group(1)), value)
                for m in scale.metrics
                if (match := re.fullmatch(rf"{prefix}_n(\d+)", m.name)) and (value := scale.value("wool", m.name)) is not None
            )
            ax.plot([n for n, _ in points], [v for _, v in points], marker="o")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("workers N")
            ax.set_title(label, fontsize=9)
            ax.set_ylim(bottom=0)
        fig.suptitle("WorkerPool(size=N), idle after one call per worker", fontsize=10)
        fig.tight_layout()
        written.append(directory / "scale.png")
        fig.savefig(written[-1], dpi=80)
        plt.close(fig)
    return written
