"""`python -m ebbtide.runtime`: one replica, with nothing imported that serving does not need."""

from __future__ import annotations

import argparse
import logging
import sys

from ebbtide.core.errors import EbbtideError
from ebbtide.runtime.repository import REPOSITORY_ENV
from ebbtide.runtime.server import resolve, serve
from ebbtide.runtime.settings import (
    DEFAULT_MAX_BODY_BYTES,
    BatchingSettings,
    ListenAddress,
    ServerSettings,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ebbtide.runtime",
        description="Serve one model over the Open Inference Protocol v2 and KServe v1.",
    )
    p.add_argument("model", help="NAME or NAME:VERSION in the model repository")
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
        "--drain-seconds", type=float, default=0.0,
        help="after SIGTERM, report not-ready this long before closing the listener",
    )  # fmt: skip
    p.add_argument(
        "--graceful-timeout", type=float, default=30.0,
        help="the longest to wait for accepted requests when stopping (default 30)",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=1,
        help="threads for BLAS/OpenMP pools (default 1; 0 keeps the libraries' defaults)",
    )  # fmt: skip
    p.add_argument("--access-log", action="store_true", help="log every request")
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
        drain_seconds=args.drain_seconds,
        graceful_timeout_seconds=args.graceful_timeout,
        threads=args.threads or None,
        access_log=args.access_log,
        log_level=args.log_level,
    )
    return address, settings


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    reference = args.model
    if args.model_version:
        reference = f"{args.model.partition(':')[0]}:{args.model_version}"
    try:
        address, settings = settings_from(args)
        location = resolve(reference, args.repository)
    except (EbbtideError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return serve(location, address, settings)
