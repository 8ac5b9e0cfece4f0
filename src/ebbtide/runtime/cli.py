"""`python -m ebbtide.runtime` and `ebbtide serve-model`: one replica, with nothing imported that
serving does not need (the server stack is imported once the arguments are known to be good)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.errors import EbbtideError
from ebbtide.runtime.repository import REPOSITORY_ENV
from ebbtide.runtime.settings import (
    DEFAULT_LOAD_WAIT_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_QUEUE,
    BatchingSettings,
    ListenAddress,
    ServerSettings,
)
from ebbtide.runtime.timeline import StartTimeline


def parser(prog: str = "python -m ebbtide.runtime") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve one model over the Open Inference Protocol v2 and KServe v1.",
    )
    p.add_argument("model", nargs="?", help="NAME or NAME:VERSION in the model repository")
    p.add_argument("--name", dest="model_name", help="the model's NAME (instead of the argument)")
    p.add_argument("--version", dest="model_version", help="the version (instead of :VERSION)")
    p.add_argument(
        "--repository", help=f"the model repository root (default ${REPOSITORY_ENV} or "
        "$EBBTIDE_HOME/models)"
    )  # fmt: skip
    listen = p.add_argument_group("where to listen (one of)")
    listen.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    listen.add_argument("--port", type=int, help="TCP port (default 8080)")
    listen.add_argument("--unix", help="a unix socket path instead of TCP")
    listen.add_argument("--fd", type=int, help="an inherited listening socket's descriptor")
    batching = p.add_argument_group("adaptive batching (off unless --max-batch-size is given)")
    batching.add_argument("--max-batch-size", type=int, help="the most rows in one model call")
    batching.add_argument(
        "--max-latency-ms", type=float, default=5.0,
        help="the longest a request waits for a batch to fill (default 5)",
    )  # fmt: skip
    p.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
        help=f"larger request bodies get 413 (default {DEFAULT_MAX_BODY_BYTES})",
    )  # fmt: skip
    p.add_argument(
        "--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
        help="the most requests waiting for the model, served in arrival order; more get 503 "
        f"with Retry-After (default {DEFAULT_MAX_QUEUE})",
    )  # fmt: skip
    p.add_argument(
        "--drain-seconds", type=float, default=0.0,
        help="after SIGTERM, report not-ready this long before closing the listener",
    )  # fmt: skip
    p.add_argument(
        "--load-wait", type=float, default=DEFAULT_LOAD_WAIT_SECONDS, metavar="SECONDS",
        help="hold an inference request that comes while the model loads this long, answering "
        f"it once loaded; 0 answers 503 at once (default {DEFAULT_LOAD_WAIT_SECONDS:g})",
    )  # fmt: skip
    p.add_argument(
        "--graceful-timeout", type=float, default=30.0,
        help="the longest to wait for accepted requests when stopping (default 30)",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=1,
        help="threads for BLAS/OpenMP pools (default 1; 0 keeps the libraries' defaults)",
    )  # fmt: skip
    p.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=False,
        help="log every request",
    )  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def settings_from(args: argparse.Namespace) -> tuple[ListenAddress, ServerSettings]:
    chosen = [args.port is not None, args.unix is not None, args.fd is not None]
    if sum(chosen) > 1:
        raise ValueError("give one of --port, --unix or --fd")
    if args.unix is not None:
        address = ListenAddress.unix_socket(args.unix)
    elif args.fd is not None:
        address = ListenAddress(fd=args.fd)
    else:
        address = ListenAddress.tcp(args.host, 8080 if args.port is None else args.port)
    batching = (
        BatchingSettings(args.max_batch_size, args.max_latency_ms)
        if args.max_batch_size is not None
        else None
    )
    settings = ServerSettings(
        batching=batching,
        max_body_bytes=args.max_body_bytes,
        max_queue=args.max_queue,
        drain_seconds=args.drain_seconds,
        graceful_timeout_seconds=args.graceful_timeout,
        load_wait_seconds=args.load_wait,
        threads=args.threads or None,
        access_log=args.access_log,
        log_level=args.log_level,
    )
    return address, settings


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
NUMERIC_LIBRARIES = ("numpy", "sklearn", "onnxruntime", "xgboost", "lightgbm", "torch")


def limit_threads_before_import(settings: ServerSettings) -> ServerSettings:
    """Size the numeric libraries' thread pools through their environment variables, read
    when they load, rather than with threadpoolctl afterwards (which costs its own import and
    a scan of the loaded libraries at every start). Only while none of them is loaded yet;
    otherwise the settings are left for threadpoolctl to apply."""
    if settings.threads is None or any(name in sys.modules for name in NUMERIC_LIBRARIES):
        return settings
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(settings.threads)
    return dataclasses.replace(settings, threads=None)


def reference_from(args: argparse.Namespace) -> str:
    """`NAME[:VERSION]` from the argument or `--name`, with `--version` if given."""
    if (args.model is None) == (args.model_name is None):
        raise ValueError("name the model once: NAME[:VERSION] or --name NAME")
    reference: str = args.model if args.model is not None else args.model_name
    if args.model_version:
        reference = f"{reference.partition(':')[0]}:{args.model_version}"
    return reference


def main(
    argv: list[str] | None = None,
    prog: str = "python -m ebbtide.runtime",
    timeline: StartTimeline | None = None,
) -> int:
    timeline = timeline or StartTimeline.begin(SYSTEM_CLOCK)
    args = parser(prog).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        reference = reference_from(args)
        address, settings = settings_from(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = limit_threads_before_import(settings)
    from ebbtide.runtime.server import resolve, serve

    timeline.mark("imported")
    try:
        location = resolve(reference, args.repository)
    except EbbtideError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    timeline.mark("resolved")
    return serve(location, address, settings, timeline=timeline)
