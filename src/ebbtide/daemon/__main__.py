"""`python -m ebbtide.daemon --home DIR`: the control plane in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from ebbtide.autoscaler.profiles import PROFILES
from ebbtide.core.errors import EbbtideError
from ebbtide.core.paths import ebbtide_home
from ebbtide.daemon.control_plane import ControlPlaneSettings, serve


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ebbtide.daemon")
    parser.add_argument("--home", type=Path, default=None, help="The state directory.")
    parser.add_argument("--gateway-host", default="127.0.0.1")
    parser.add_argument("--gateway-port", type=int, default=8080, help="0 picks a free port.")
    parser.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        help="Gateway processes sharing the port (SO_REUSEPORT); up to one per core.",
    )
    parser.add_argument("--repository", type=Path, default=None, help="The model repository.")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="local")
    parser.add_argument(
        "--dashboard-port", type=int, default=None, help="Default 8090 or a free one; 0: free."
    )
    arguments = parser.parse_args()
    settings = ControlPlaneSettings(
        gateway_host=arguments.gateway_host,
        gateway_port=arguments.gateway_port,
        gateway_workers=max(1, arguments.gateway_workers),
        repository=arguments.repository,
        profile=arguments.profile,
        dashboard_port=arguments.dashboard_port,
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per readiness probe
    try:
        return asyncio.run(serve(arguments.home or ebbtide_home(), settings))
    except EbbtideError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
