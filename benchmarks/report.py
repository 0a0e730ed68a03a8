"""The printed report (ratios first, then targets, then absolute values) and the JSON one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import Config
from .machine import headline
from .results import BASELINES, WOOL, WorkloadResult


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    left = "  ".join(f"{c:<{w}}" for c, w in zip(cells[:2], widths[:2], strict=False))
    return (left + "  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells[2:], widths[2:], strict=False))).rstrip()


def render(results: Sequence[WorkloadResult], cfg: Config, machine: dict[str, Any], wall: float) -> str:
    baselines = list(BASELINES)
    done = [r for r in results if not (r.skipped or r.error)]
    out = [f"wool benchmarks, {cfg.mode} mode, {cfg.workers} workers per side, {wall:.0f} s", f"machine: {headline(machine)}"]
    out += [f"  {name:<8} {text}" for name, text in BASELINES.items()]

    out += ["", "RATIOS  wool / baseline, medians over repetitions (lower is better for times and sizes, higher for rates)"]
    widths = [16, 28, *(max(7, len(b)) for b in baselines)]
    out.append(_row(["workload", "metric", *baselines], widths))
    for r in done:
        for m in r.metrics:
            if m.ratio:
                out.append(
                    _row(
                        [
                            r.name,
                            f"{m.name} ({'higher' if m.higher_is_better else 'lower'})",
                            *(_ratio(r.ratio(b, m.name)) for b in baselines),
                        ],
                        widths,
                    )
                )

    out += ["", "TARGETS"]
    for r in results:
        if r.skipped or r.error:
            out.append(f"{r.name:<16}  {'SKIPPED' if r.skipped else 'ERROR'}: {r.skipped or r.error}")
            continue
        for t in r.targets:
            value, holds = r.check(t)
            shown = _ratio(value) if t.baseline else f"{_num(value)} {r.metric(t.metric).unit}"
            verdict = "not measured" if holds is None else "holds" if holds else "MISSED"
            out.append(f"{r.name:<16}  {t.text(r.metric(t.metric).unit):<34} {shown:>10}  {verdict}")

    out += ["", "ABSOLUTE  medians over repetitions"]
    widths = [16, 18, 7, 10, *(10 for _ in baselines), 4]
    out.append(_row(["workload", "metric", "unit", WOOL, *baselines, "reps"], widths))
    for r in done:
        reps = str(r.params.get("reps", 1))
        for m in r.metrics:
            values = [_num(r.value(side, m.name)) for side in (WOOL, *baselines)]
            out.append(_row([r.name, m.name, m.unit, *values, reps], widths))
    notes = [f"{r.name}: {n}" for r in done for n in r.notes]
    if notes:
        out += ["", "NOTES", *notes]
    return "\n".join(out)


def write_json(path: Path, results: Sequence[WorkloadResult], cfg: Config, machine: dict[str, Any], wall: float) -> None:
    doc = {
        "mode": cfg.mode,
        "wall_s": round(wall, 1),
        "machine": machine,
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "baselines": BASELINES,
        "workloads": {r.name: r.to_json() for r in results},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
