"""wool against hand-written baselines, measured in the same run.

    python benchmarks/run.py [--quick] [--json PATH] [--only W1,W2] [--reps N] [--strict]

Run from anywhere: the checkout's root is put first on `sys.path`, so the `wool` measured is
this checkout's, and spawned workers (which get the caller's `sys.path`) can import the
benchmark routines. See `benchmarks/cli.py` for what is measured.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
# Replace the script's own directory: its modules are imported as `benchmarks.*`, and must not
# shadow top-level modules of the same name in this process or in the workers it spawns.
sys.path[:] = [_ROOT] + [p for p in sys.path if os.path.abspath(p or os.curdir) not in (_HERE, _ROOT)]

if __name__ == "__main__":  # ProcessPoolExecutor's spawned workers import this module too
    from benchmarks.cli import main

    main()
