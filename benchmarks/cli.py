"""The command line: run the workloads, print the report, write the JSON.

Every workload runs wool and its baselines in the same run, alternating between them from
one repetition to the next, and reports medians and the ratios wool/baseline. Targets are
reported, never enforced, unless `--strict` (exit status 1 when one is missed). The exit
status is 1 when a workload failed to run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
import traceback
from pathlib import Path

from .config import FULL, QUICK, Config
from .machine import describe
from .plot import plot
from .report import render, write_json
from .results import WorkloadResult
from .sides import Sides
from .workloads import NAMES, WORKLOADS, Workload


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run takes well under a minute")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the results as JSON to PATH")
    parser.add_argument("--only", metavar="W1,W2", help=f"run only these workloads, of: {', '.join(NAMES)}")
    parser.add_argument("--reps", type=int, metavar="N", help="repetitions of every workload (default: per workload)")
    parser.add_argument("--workers", type=int, metavar="N", help="workers per side (default: 2)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--plot", metavar="DIR", type=Path, help="also write PNG charts to DIR (needs matplotlib: wool[plot])")
    args = parser.parse_args(argv)
    if args.only:
        unknown = set(args.only.split(",")) - set(NAMES)
        if unknown:
            parser.error(f"unknown workloads: {', '.join(sorted(unknown))} (known: {', '.join(NAMES)})")
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


async def _run_one(workload: Workload, cfg: Config, sides: Sides | None) -> WorkloadResult:
    print(f"{workload.name} ...", end=" ", file=sys.stderr, flush=True)
    t = time.perf_counter()
    try:
        if workload.run_alone is not None:
            result = await workload.run_alone(cfg)
        else:
            assert workload.run is not None and sides is not None
            result = await workload.run(cfg, sides)
    except Exception as e:
        traceback.print_exc()
        result = WorkloadResult(workload.name, "", error=f"{type(e).__name__}: {e}")
    result.seconds = time.perf_counter() - t
    print(
        f"{'skipped' if result.skipped else 'failed' if result.error else 'done'} in {result.seconds:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return result


async def run(cfg: Config, selected: list[Workload]) -> list[WorkloadResult]:
    results = [await _run_one(w, cfg, None) for w in selected if w.run_alone is not None]
    shared = [w for w in selected if w.run_alone is None]
    if shared:
        async with Sides(cfg.workers) as sides:
            for w in shared:
                results.append(await _run_one(w, cfg, sides))
    return results


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    cfg = QUICK if args.quick else FULL
    if args.reps is not None:
        cfg = cfg.with_reps(args.reps)
    if args.workers is not None:
        cfg = dataclasses.replace(cfg, workers=args.workers)
    names = args.only.split(",") if args.only else NAMES
    selected = [w for w in WORKLOADS if w.name in names]
    machine = describe()
    t = time.perf_counter()
    results = asyncio.run(run(cfg, selected))
    wall = time.perf_counter() - t
    print(render(results, cfg, machine, wall))
    if args.json:
        write_json(args.json, results, cfg, machine, wall)
        print(f"\nwrote {args.json}")
    if args.plot:
        for path in plot(results, args.plot):
            print(f"wrote {path}")
    missed = any(r.check(t)[1] is False for r in results for t in r.targets)
    sys.exit(1 if any(r.error for r in results) or (args.strict and missed) else 0)
