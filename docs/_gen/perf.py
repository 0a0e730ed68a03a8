"""Performance tables from a results file written by `python benchmarks/run.py --json PATH`.

Nothing here is typed by hand: a new run is a new file, and the page names the file it shows.
Paths are relative to the repository's root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._table import code, table

ROOT = Path(__file__).resolve().parents[2]


def num(x: float | None) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def load(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / path).read_text())
    if "workloads" not in doc or "machine" not in doc:
        raise ValueError(f"{path} is not a results file of benchmarks/run.py --json (no 'workloads' or 'machine')")
    return doc


def _ok(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: w for name, w in doc["workloads"].items() if w["status"] == "ok"}


def header(path: str, doc: dict[str, Any]) -> str:
    m = doc["machine"]
    commit = str(m.get("wool_commit", "?"))[:7]
    cfg = doc.get("config", {})
    lines = [
        f"Source: {code(path)}, a {code(doc['mode'])} run of {code('python benchmarks/run.py')} "
        f"({doc.get('wall_s', '?')} s) at commit {code(commit)}, {cfg.get('workers', '?')} workers per side.",
        "",
        table(
            ("machine", ""),
            [
                ("CPUs", f"{m.get('cpus_usable', '?')} usable of {m.get('cpu_count', '?')} ({m.get('cpu_model', '?')})"),
                ("load average at start", ", ".join(str(x) for x in m.get("load_average", []))),
                ("Python", m.get("python", "?")),
                ("pyzmq / libzmq", f"{m.get('pyzmq', '?')} / {m.get('libzmq', '?')}"),
                ("workers' event loop", m.get("server_event_loop", "?")),
            ],
        ),
    ]
    return "\n".join(lines)


def baselines(doc: dict[str, Any]) -> str:
    return table(("side", "what it is"), [(code(k), v) for k, v in doc.get("baselines", {}).items()])


def ratios(doc: dict[str, Any]) -> str:
    rows = []
    for name, w in _ok(doc).items():
        for side, metrics in w.get("ratios", {}).items():
            for metric, value in metrics.items():
                if value is not None:
                    better = w["metrics"][metric]["better"]
                    rows.append((code(name), code(metric), code(side), f"{value:.2f}×", f"{better} is better"))
    return table(("workload", "metric", "baseline", "wool / baseline", ""), rows)


def targets(doc: dict[str, Any]) -> str:
    rows = []
    for name, w in _ok(doc).items():
        for t in w.get("targets", []):
            holds = {True: "holds", False: "**missed**", None: "not measured"}[t["holds"]]
            rows.append((code(name), code(t["text"]), num(t["value"]), holds))
    return table(("workload", "target", "measured", ""), rows)


def values(doc: dict[str, Any]) -> str:
    parts = []
    for name, w in _ok(doc).items():
        sides = list(w["results"])
        rows = []
        for metric, info in w["metrics"].items():
            rows.append((code(metric), info["unit"], *(num(w["results"][s].get(metric)) for s in sides)))
        parts += [f"**{code(name)}**: {w['description']}", table(("metric", "unit", *map(code, sides)), rows)]
    return "\n\n".join(parts)


def markdown(args: str) -> str:
    """`PATH [PART]`: PART is one of header, baselines, ratios, targets, values (default: all)."""
    words = args.split()
    if not words:
        raise ValueError("perf needs the path of a results file")
    path, part = words[0], (words[1] if len(words) > 1 else "all")
    doc = load(path)
    parts = {
        "header": lambda: header(path, doc),
        "baselines": lambda: baselines(doc),
        "ratios": lambda: ratios(doc),
        "targets": lambda: targets(doc),
        "values": lambda: values(doc),
    }
    if part == "all":
        return "\n\n".join(f() for f in parts.values())
    if part not in parts:
        raise ValueError(f"unknown perf part {part!r}: known are {', '.join(parts)}, all")
    return parts[part]()
