"""`wool.joblib`: joblib.Parallel and scikit-learn's `n_jobs` on real wool workers, with the
same results as joblib's default backend; the module imports joblib only when used."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO

import wool

joblib = pytest.importorskip("joblib")
sklearn_model_selection = pytest.importorskip("sklearn.model_selection")

import wool.joblib  # noqa: E402

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def fold_pid(estimator: object, X: object, y: object) -> int:
    return os.getpid()


def boom(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def test_importing_wool_joblib_does_not_import_joblib() -> None:
    code = "import sys, wool, wool.joblib; print('joblib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False\n"


def test_cross_val_score_matches_the_default_backend_and_runs_on_workers() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    wool.joblib.register()
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500)
    # joblib's default backend (loky) keeps its processes for reuse: run it in a process of its own
    default_code = (
        "from sklearn.datasets import load_iris; from sklearn.linear_model import LogisticRegression; "
        "from sklearn.model_selection import cross_val_score; X, y = load_iris(return_X_y=True); "
        "print(cross_val_score(LogisticRegression(max_iter=500), X, y, cv=4, n_jobs=2).tolist())"
    )
    done = subprocess.run([sys.executable, "-c", default_code], capture_output=True, text=True, timeout=120, env=env())
    assert done.returncode == 0, done.stderr
    default = done.stdout.strip()
    with wool.WorkerPool(size=2) as pool, joblib.parallel_config(backend="wool", n_jobs=2):
        scores = sklearn_model_selection.cross_val_score(model, X, y, cv=4, n_jobs=2)
        pids = set(sklearn_model_selection.cross_val_score(model, X, y, cv=4, n_jobs=2, scoring=fold_pid).tolist())
        workers = {w.pid for w in pool.workers}
    assert str(scores.tolist()) == default
    assert pids and pids <= workers


def test_parallel_without_an_open_pool_opens_one_for_the_call() -> None:
    wool.joblib.register()
    with joblib.parallel_config(backend="wool", n_jobs=2):
        pids = joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(6))
    assert os.getpid() not in pids
    assert 1 <= len(set(pids)) <= 2


def test_an_error_in_a_batch_is_raised_and_the_pool_keeps_serving() -> None:
    wool.joblib.register()
    with wool.WorkerPool(size=2) as pool, joblib.parallel_config(backend="wool", n_jobs=2):
        with pytest.raises(ValueError, match="three"):
            joblib.Parallel()(joblib.delayed(boom)(i) for i in range(8))
        assert joblib.Parallel()(joblib.delayed(boom)(i) for i in range(3)) == [0, 1, 2]
        assert len(pool.workers) == 2


def test_example_prints_what_the_readme_says() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "joblib_sklearn.py")], capture_output=True, text=True, timeout=120, env=env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "mean accuracy: 0.973",
        "same scores as joblib's default backend: True",
        "every fold ran on a wool worker: True",
    ]
