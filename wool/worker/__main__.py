"""`python -m wool.worker`: run one worker until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import pickle
import sys
import traceback
from collections.abc import Coroutine
from typing import Any, TypeVar

from .. import _metrics, _tracing
from .. import protocol as p
from .._errors import WoolError
from .._memory import check_memory_limit, parse_size
from .._seconds import check_seconds
from .._spin import DEFAULT_SPIN_US, IDLE_STRATEGIES, check_idle
from .._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE, HANDSHAKE_IVL_MS, check_liveness, check_max_message_size
from ..caller import DEFAULT_IDLE_TIMEOUT
from ..discovery import SPEC_HELP, WorkerInfo, discovery_from_args, prune_registry
from ..sharing import default_limit
from ._config import DEFAULT_BIND_HELP, DEFAULT_GRACE, WorkerConfig, check_recycle_after
from ._lifeline import die_with_parent, pool_pid, watch_pool
from ._lifespan import LifespanError, load_factory
from ._metrics_http import DEFAULT_METRICS_ADDRESS, TAG_PREFIX, token_path
from ._runtime import serve
from ._setup import run_setup
from ._template import serve_template
from ._threads import DEFAULT_THREADS, check_threads

LOG_FORMAT = "%(asctime)s wool[%(process)d] %(levelname)s %(name)s: %(message)s"
EXIT_MEMORY = 70  # --recycle-exit: the memory limit was far exceeded and the loop was held

T = TypeVar("T")


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run the worker on uvloop when it is installed (`pip install wool[uvloop]`: each call
    costs the worker less loop overhead), unless WOOL_UVLOOP=0; else on asyncio's loop."""
    try:
        if os.environ.get("WOOL_UVLOOP", "1") != "0":
            try:
                import uvloop
            except ImportError:
                pass
            else:
                return uvloop.run(main)
        return asyncio.run(main)
    finally:
        _tracing.flush()  # the spans of its last calls, before the process exits


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wool.worker",
        description="Run a wool worker: serve routines dispatched by pools that discover it, "
        "until SIGTERM or SIGINT; then finish or cancel running calls, withdraw, and exit 0.",
    )
    parser.add_argument(
        "--discovery",
        metavar="SPEC",
        help=f"where to publish this worker and find its peers: {SPEC_HELP}",
    )
    parser.add_argument(
        "--bind",
        metavar="ENDPOINT",
        help="ZeroMQ endpoint to listen on: ipc://PATH (in a directory only this user can access), or "
        "tcp://HOST:PORT (port 0: any free port), which needs --keys or --insecure "
        f"(default: {DEFAULT_BIND_HELP}, which only this user and root can connect to)",
    )
    parser.add_argument(
        "--tag", action="append", default=[], metavar="TAG", help="a tag to publish with this worker (repeatable)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"on stop, how long running calls may finish before they are cancelled (default: {DEFAULT_GRACE})",
    )
    parser.add_argument(
        "--liveness",
        type=float,
        default=DEFAULT_LIVENESS,
        metavar="SECONDS",
        help="a caller or peer that stops answering (dead, frozen, unreachable) is dropped and "
        f"its calls cancelled within this time (default: {DEFAULT_LIVENESS:g})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="close a connection to a peer after this long without calls; it reopens on the next call "
        f"(default: {DEFAULT_IDLE_TIMEOUT:g}; 0: never)",
    )
    parser.add_argument(
        "--max-calls",
        type=int,
        metavar="N",
        help="run at most N calls at once; further calls wait for a slot, and callers send "
        "them to other workers when they can (default: no limit)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"run at most N plain `def` routines at once, each in a thread (default: {DEFAULT_THREADS}; CPU-bound "
        "Python gains nothing from more threads in one process); async routines are not limited by this",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="the largest message part (one argument's or result's pickle, or one large buffer in it) this worker "
        "accepts and sends; a peer sending more is disconnected before anything is allocated, and callers are told "
        f"before sending (default: {DEFAULT_MAX_MESSAGE_SIZE} = {DEFAULT_MAX_MESSAGE_SIZE >> 20} MiB; callers need "
        f"as much for results: WorkerPool(max_message_size=BYTES)). Connections must complete their handshake within "
        f"{HANDSHAKE_IVL_MS / 1000:g} s",
    )
    parser.add_argument(
        "--share-cache",
        type=int,
        default=None,
        metavar="BYTES",
        help="keep at most BYTES of values shared with wool.share mapped; the least recently used are dropped "
        f"and mapped again when needed (by default 1 GiB or a quarter of this host's memory, if less: {default_limit()} here)",
    )
    parser.add_argument(
        "--keys",
        metavar="DIR",
        help="CURVE key directory (made by `python -m wool.keys generate DIR`): encrypt every "
        "connection, accept only callers whose public key DIR trusts (DIR/trusted/*.pub, and "
        "DIR's own), and call only peers it trusts",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="run without --keys where others could reach this worker or pose as its peers: a tcp:// --bind "
        "(loopback: every user of this machine can connect; other addresses: every host that reaches them) or "
        "--discovery lan or static:tcp://...; whoever gets in can run code as this user",
    )
    parser.add_argument(
        "--lifespan",
        metavar="MODULE:ATTR",
        help="a zero-argument callable returning an async context manager (an @asynccontextmanager "
        "function), entered once before the first call and exited after the last; routines read "
        "what it yields with wool.state(). MODULE is imported from this process's sys.path: "
        "PYTHONPATH, the installed packages and, for `python -m` without -P, the working directory",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="level of the 'wool' logger, written to stderr (default: WARNING)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://ADDRESS:PORT/metrics (0: any free port, published with the "
        "worker as the tag metrics=HOST:PORT) to requests bearing this user's token (Authorization: Bearer, "
        "from RUNTIME_DIR/metrics.token); needs prometheus_client (pip install 'wool[metrics]')",
    )
    parser.add_argument(
        "--metrics-address",
        default=DEFAULT_METRICS_ADDRESS,
        metavar="ADDRESS",
        help=f"the address --metrics-port listens on (default: {DEFAULT_METRICS_ADDRESS}: this machine only)",
    )
    parser.add_argument(
        "--idle",
        choices=IDLE_STRATEGIES,
        default="sleep",
        help="what the event loop does with nothing to do: sleep in the kernel until a socket is ready (the "
        "default), or spin: poll the sockets for --spin-us after each message before sleeping, which cuts "
        "latency and costs a core while it spins",
    )
    parser.add_argument(
        "--spin-us",
        type=int,
        metavar="N",
        help=f"with --idle spin: how long to poll after each message, in microseconds ({DEFAULT_SPIN_US} if not given)",
    )
    parser.add_argument(
        "--recycle-after",
        type=int,
        metavar="N",
        help="after N calls, stop taking calls (callers send them elsewhere), finish the running ones and "
        "re-execute in place: a new incarnation with the same options (default: never)",
    )
    parser.add_argument(
        "--memory-limit",
        type=_size,
        metavar="SIZE",
        help="recycle (as --recycle-after does) once the RSS exceeds SIZE between calls (bytes, or units such as "
        "512MB or 2GiB); above 1.2 x SIZE while calls run, fail them with WorkerLost naming the limit and restart",
    )
    parser.add_argument(
        "--recycle-exit",
        action="store_true",
        help="when recycling, exit 0 (70 after exceeding 1.2 x --memory-limit) instead of re-executing, for "
        "supervisors (systemd Restart=always, Kubernetes) that start it again",
    )
    parser.add_argument(
        "--no-forward-output",
        action="store_true",
        help="keep what routines print and log here (default: also send it to the process that made the call, "
        "which writes it out prefixed with this worker's id, pid and host)",
    )
    parser.add_argument("--spawned", type=int, metavar="FD", help=argparse.SUPPRESS)
    parser.add_argument("--template", type=int, metavar="FD", help=argparse.SUPPRESS)
    return parser


def _read_part() -> bytes:
    def read_exactly(n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = os.read(0, n - len(chunks))
            if not chunk:
                raise EOFError("the spawning pool closed stdin before sending the config")
            chunks += chunk
        return bytes(chunks)

    return read_exactly(int.from_bytes(read_exactly(8), "big"))


def _read_config() -> WorkerConfig:
    """A spawned worker's config, from stdin (see `_process`)."""
    header = json.loads(_read_part())
    # Modules the caller could import (its discovery class, routines pickled by reference)
    # must import here too, before anything is unpickled.
    sys.path[:] = list(dict.fromkeys([*header["sys_path"], *sys.path]))
    config = pickle.loads(_read_part())
    if not isinstance(config, WorkerConfig):
        raise TypeError("stdin did not carry a WorkerConfig")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.spawned is not None:
        return _run_spawned(args.spawned)
    if args.template is not None:
        die_with_parent(pool_pid())  # a template never runs user code: nothing to clean up
        return _run_template(args.template)
    if args.discovery is None:
        parser.error("--discovery is required (for example --discovery local:NAME, or --discovery lan)")
    if args.keys is not None and args.insecure:
        parser.error("--insecure and --keys exclude each other")
    discovery, keys = discovery_from_args(parser, args.discovery, args.keys)
    try:
        check_seconds(args.grace, "--grace")
    except ValueError as e:
        parser.error(str(e))
    try:
        liveness = check_liveness(args.liveness)
    except ValueError as e:
        parser.error(f"--liveness: {e}")
    if args.max_calls is not None and args.max_calls < 1:
        parser.error("--max-calls must be at least 1")
    try:
        check_threads(args.threads, "--threads")
    except ValueError as e:
        parser.error(str(e))
    if args.metrics_port is not None:
        if not 0 <= args.metrics_port <= 65535:
            parser.error("--metrics-port must be between 0 and 65535")
        if not _metrics.available():
            parser.error("--metrics-port needs prometheus_client: pip install 'wool[metrics]'")
    if not 0 <= args.idle_timeout < float("inf"):
        parser.error("--idle-timeout must be a non-negative number of seconds (0: never)")
    lifespan = None
    if args.lifespan is not None:
        try:
            lifespan = load_factory(args.lifespan)
        except ValueError as e:
            parser.error(str(e))
        except Exception as e:
            hint = ""
            if isinstance(e, ModuleNotFoundError) and sys.flags.safe_path:
                hint = " (safe-path mode, -P or PYTHONSAFEPATH, keeps the working directory off sys.path: add your project to PYTHONPATH)"
            parser.error(f"--lifespan {args.lifespan}: cannot import it: {type(e).__name__}: {e}{hint}")
    try:
        check_max_message_size(args.max_message_size)
    except ValueError as e:
        parser.error(f"--max-message-size: {e}")
    if args.share_cache is not None and args.share_cache < 0:
        parser.error("--share-cache must not be negative")
    try:
        check_idle(args.idle, args.spin_us)
    except ValueError as e:
        parser.error(f"--idle/--spin-us: {e}")
    try:
        check_recycle_after(args.recycle_after, "--recycle-after")
        check_memory_limit(args.memory_limit, "--memory-limit")
    except ValueError as e:
        parser.error(str(e))
    try:
        config = WorkerConfig(
            discovery,
            args.bind,
            frozenset(args.tag),
            args.grace,
            args.log_level,
            liveness=liveness,
            max_calls=args.max_calls,
            threads=args.threads,
            keys=keys,
            insecure=args.insecure,
            max_message_size=args.max_message_size,
            metrics_port=args.metrics_port,
            metrics_address=args.metrics_address,
            idle_timeout=args.idle_timeout or None,
            lifespan=lifespan,
            share_cache=args.share_cache,
            idle=args.idle,
            spin_us=args.spin_us,
            recycle_after=args.recycle_after,
            memory_limit=args.memory_limit,
            forward_output=not args.no_forward_output,
        )
    except ValueError as e:
        parser.error(str(e))
    _configure_logging(config.log_level)

    def on_ready(info: WorkerInfo) -> None:
        metrics = "".join(
            f"; metrics at http://{t[len(TAG_PREFIX) :]}/metrics (bearer token in {token_path()})"
            for t in info.tags
            if t.startswith(TAG_PREFIX)
        )
        # Whoever started it may have stopped reading (a supervisor's pipe, a test's reader
        # gone by the time a recycled worker re-executed): the banner is not worth the worker.
        with contextlib.suppress(OSError):
            print(f"wool worker {info.id} listening on {info.endpoint} (pid {info.pid}){metrics}", flush=True)

    argv = sys.argv[1:] if argv is None else argv
    hard_exit = (lambda: os._exit(EXIT_MEMORY)) if args.recycle_exit else (lambda: _reexecute(argv))
    try:
        run_setup()
        prune_registry()  # what killed pools and workers left in the runtime directory
        recycled = _run(serve(config, on_ready, hard_exit=hard_exit))
    except LifespanError as e:
        assert e.__cause__ is not None
        trace = "".join(traceback.format_exception(e.__cause__))
        print(f"wool worker: {e}\n\n{trace}", file=sys.stderr, end="")
        return 1
    except (OSError, WoolError, ValueError) as e:
        print(f"wool worker: {e}", file=sys.stderr)
        return 1
    if recycled is not None and not args.recycle_exit:
        with contextlib.suppress(OSError):  # a closed stdout must not stop the restart
            print(f"wool worker recycling ({recycled}): starting again", flush=True)
        _reexecute(argv)
    return 0


def _reexecute(argv: list[str]) -> None:
    """Replace this process by a new worker with the same options (same pid: a supervisor
    watching it sees no exit)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    # The same interpreter options: safe-path mode (-P) above all, so a worker started with the
    # working directory off sys.path is not re-executed with it back on.
    flags = [*(["-P"] if sys.flags.safe_path else []), *(f"-W{w}" for w in sys.warnoptions)]
    os.execv(sys.executable, [sys.executable, *flags, "-m", "wool.worker", *argv])


def _configure_logging(level: str | None) -> None:
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("wool").setLevel(level or "WARNING")


def _run_spawned(ready_fd: int) -> int:
    """A worker spawned by a pool: config from stdin, handshake on `ready_fd`, and a failure
    to start reported through the handshake so the pool can say why."""
    ready = False

    def handshake(payload: dict[str, object]) -> None:
        nonlocal ready
        ready = True
        tell(payload)

    def tell(payload: dict[str, Any]) -> None:
        # After the handshake the pipe stays open: it tells the pool of recycles.
        with contextlib.suppress(OSError):
            os.write(ready_fd, json.dumps(payload).encode() + b"\n")

    try:
        config = _read_config()
        watch_pool(pool_pid(), config.grace)
        _configure_logging(config.log_level)
        run_setup()
        _run(
            serve(
                config, lambda info: handshake(info.to_dict()), watch_fd=0, notify=tell, hard_exit=lambda: os._exit(EXIT_MEMORY)
            )
        )
    except BaseException as e:
        if ready:
            raise
        if isinstance(e, LifespanError) and e.__cause__ is not None:
            # The user's exception itself, with its traceback, for the pool to raise from.
            frames = p.dumps_exception(e.__cause__)
            cause = base64.b64encode(frames[0]).decode() if len(frames) == 1 else None
            handshake({"error": str(e), "cause": cause, "cause_text": p.describe(e.__cause__)})
        else:
            handshake({"error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


def _run_template(control_fd: int) -> int:
    """The pool's worker template (see `_template`): import now what every worker needs, so
    that each forked child starts with it."""
    if os.environ.get("WOOL_UVLOOP", "1") != "0":
        with contextlib.suppress(ImportError):
            import uvloop  # noqa: F401
    with contextlib.suppress(ImportError, OSError):
        import inotify_simple

        inotify_simple.INotify().close()  # it looks libc up (running ldconfig) on first use
    return serve_template(control_fd, _run_spawned)


if __name__ == "__main__":
    sys.exit(main())
