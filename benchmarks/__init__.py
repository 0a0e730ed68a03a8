"""wool's benchmark suite: every workload measured against hand-written baselines in the same
run, on the same machine. Run `python benchmarks/run.py --help` (or `python -m benchmarks`)."""
