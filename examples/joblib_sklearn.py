"""scikit-learn's n_jobs work on wool workers, through the joblib backend (see README "With
joblib and scikit-learn")."""

import os

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

import wool
import wool.joblib


def where(estimator: object, X: object, y: object) -> int:
    """A 'scorer' that reports the process each fold ran in."""
    return os.getpid()


wool.joblib.register()
X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500)
default = cross_val_score(model, X, y, cv=5, n_jobs=2)

with wool.WorkerPool(size=2) as pool, joblib.parallel_config(backend="wool", n_jobs=2):
    scores = cross_val_score(model, X, y, cv=5, n_jobs=2)
    folds_ran_in = set(cross_val_score(model, X, y, cv=5, n_jobs=2, scoring=where).tolist())
    workers = {w.pid for w in pool.workers}

print("mean accuracy:", f"{scores.mean():.3f}")
print("same scores as joblib's default backend:", scores.tolist() == default.tolist())
print("every fold ran on a wool worker:", folds_ran_in <= workers)
