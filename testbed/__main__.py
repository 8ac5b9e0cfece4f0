"""`python -m testbed up|down|status`: the test cluster in `.testbed/` (or $EBBTIDE_TESTBED_DIR)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from testbed.cluster import Cluster, default_state_dir


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    parser.add_argument("--no-node", action="store_true", help="the control plane only")
    arguments = parser.parse_args()
    cluster = Cluster(arguments.state_dir)
    if arguments.action == "up":
        began = time.monotonic()
        state = cluster.start(with_node=not arguments.no_node)
        print(f"test cluster up in {time.monotonic() - began:.1f}s: {state.server}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
    elif arguments.action == "down":
        was_running = cluster.state is not None
        cluster.stop()
        print("test cluster stopped" if was_running else "no test cluster was running")
    else:
        if cluster.running() and cluster.state is not None:
            for process in cluster.state.processes:
                print(f"{process.name:24} pid {process.pid:<8} log {process.log}")
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        else:
            print("no test cluster running")
            sys.exit(1)


if __name__ == "__main__":
    main()
