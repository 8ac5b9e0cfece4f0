"""`python -m ebbtide.daemon --home DIR`: the control plane in the foreground."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ebbtide.core.paths import ebbtide_home
from ebbtide.daemon.control_plane import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ebbtide.daemon")
    parser.add_argument("--home", type=Path, default=None, help="The state directory.")
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.home or ebbtide_home()))


if __name__ == "__main__":
    main()
