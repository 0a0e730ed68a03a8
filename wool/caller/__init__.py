"""The caller side: routines and their streams, connections to workers, the mesh that picks
one, options, and the context that travels with a call.

Other packages import from here, never from the private modules below: `wool.worker` runs
calls with the same options and context variables, `wool.discovery` probes static endpoints
through a `Connection`, and `wool._pool` opens a `Mesh`."""

from . import _output as output
from ._blocking import Home, home_var
from ._blocking import run as run_blocking
from ._broadcast import broadcast
from ._connection import Connection
from ._context import (
    OpenPool,
    current_mesh_var,
    current_pool,
    current_slot_var,
    latest_pool,
    pool_closed,
    pool_opened,
    rehandle,
    shared_args_var,
)
from ._contextvars import ContextVar, Snapshot, Token, send_back
from ._contextvars import apply as apply_snapshot
from ._contextvars import unpickle as unpickle_snapshot
from ._fetches import answer_fetch, fetch_server
from ._idle import DEFAULT_IDLE_TIMEOUT, check_idle_timeout
from ._loadbalancer import Candidate, LeastOutstanding, LoadBalancer, RoundRobin
from ._map import Map, map
from ._mesh import DEFAULT_CONNECT_TIMEOUT, Mesh
from ._options import Options, deadline_var, options, options_var, remaining
from ._readahead import ReadAhead, readahead
from ._routine import routine

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "Home",
    "Map",
    "output",
    "broadcast",
    "check_idle_timeout",
    "map",
    "Candidate",
    "Connection",
    "ContextVar",
    "LeastOutstanding",
    "LoadBalancer",
    "Mesh",
    "OpenPool",
    "Options",
    "ReadAhead",
    "RoundRobin",
    "Snapshot",
    "Token",
    "apply_snapshot",
    "current_mesh_var",
    "current_pool",
    "answer_fetch",
    "fetch_server",
    "rehandle",
    "shared_args_var",
    "current_slot_var",
    "latest_pool",
    "pool_closed",
    "pool_opened",
    "deadline_var",
    "options",
    "options_var",
    "readahead",
    "remaining",
    "routine",
    "run_blocking",
    "home_var",
    "send_back",
    "unpickle_snapshot",
]
