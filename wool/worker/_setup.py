"""`WOOL_WORKER_SETUP=module:function`: code a worker process runs before it serves.

A worker started by hand (`python -m wool.worker`) or spawned by a pool calls the function the
variable names, with no arguments, after its logging is configured and before its event loop
starts: the place to set a tracer provider and exporter, a JSON log formatter, or anything
else the process needs once. Spawned workers inherit the variable from their pool's process,
and import the module with the pool's `sys.path`. (State a worker's calls share, opened and
closed with the worker, belongs in a pool's lifespan instead, where there is one.)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

SETUP_ENV = "WOOL_WORKER_SETUP"


def run_setup(environ: Mapping[str, str] = os.environ) -> None:
    """Call the function `$WOOL_WORKER_SETUP` names, if set. Raises `ValueError` naming what
    is wrong with the variable; whatever the function raises propagates, and the worker does
    not start."""
    spec = environ.get(SETUP_ENV)
    if not spec:
        return
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name.isidentifier():
        raise ValueError(f"{SETUP_ENV} must name a function as module:function, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{SETUP_ENV}={spec!r}: cannot import {module_name}: {e}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"{SETUP_ENV}={spec!r}: {module_name} has no function {function_name}")
    function()
