"""`python -m benchmarks`: the same as `python benchmarks/run.py`."""

if __name__ == "__main__":  # ProcessPoolExecutor's spawned workers import this module too
    from benchmarks.cli import main

    main()
