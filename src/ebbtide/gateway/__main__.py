"""`python -m ebbtide.gateway --control PATH (--listen-fd N | --host H --port P)`: one gateway
worker as a process of its own, fed routes over the channel at PATH (see
`ebbtide.gateway.channel`). The control plane starts one per worker; each binds the same port
with `SO_REUSEPORT` (or is handed its socket), so capacity grows with the workers."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import random
import signal
import socket
import sys
from pathlib import Path

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.errors import EbbtideError
from ebbtide.core.sockets import listen_tcp
from ebbtide.gateway.channel import REPORT_INTERVAL, SYNC_TIMEOUT
from ebbtide.gateway.gateway import Gateway
from ebbtide.gateway.service import GatewayService
from ebbtide.gateway.settings import GatewaySettings


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ebbtide.gateway", description=__doc__)
    parser.add_argument("--control", type=Path, required=True, help="The channel's unix socket.")
    parser.add_argument("--listen-fd", type=int, default=None, help="An inherited listener.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port.")
    parser.add_argument("--worker", type=int, default=0, help="This worker's number.")
    parser.add_argument(
        "--retry-unanswered",
        action="store_true",
        help="Send a request again to another replica when its replica closed the connection "
        "before any byte of an answer (safe for inference, which changes nothing).",
    )
    parser.add_argument("--report-interval", type=float, default=REPORT_INTERVAL)
    parser.add_argument(
        "--sync-timeout",
        type=float,
        default=SYNC_TIMEOUT,
        help="Seconds to wait for a control plane's routes before serving without them.",
    )
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    return parser


async def run(arguments: argparse.Namespace) -> None:
    if arguments.listen_fd is not None:
        listener = socket.socket(fileno=arguments.listen_fd)
    else:
        try:
            listener = listen_tcp(arguments.host, arguments.port)
        except OSError as error:
            raise EbbtideError(
                f"the gateway cannot listen on {arguments.host}:{arguments.port}: "
                f"{error.strerror}; choose another port"
            ) from None
    gateway = Gateway(
        clock=SYSTEM_CLOCK,
        rng=random.Random(),
        settings=GatewaySettings(retry_unanswered=arguments.retry_unanswered),
    )
    service = GatewayService(
        gateway,
        arguments.control,
        arguments.worker,
        report_interval=arguments.report_interval,
        sync_timeout=arguments.sync_timeout,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stopped.set)
    await service.serve(listener)


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    use_uvloop = arguments.loop == "uvloop" or (
        arguments.loop == "auto" and importlib.util.find_spec("uvloop") is not None
    )
    try:
        if use_uvloop:
            import uvloop

            uvloop.run(run(arguments))
        else:
            asyncio.run(run(arguments))
    except EbbtideError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
