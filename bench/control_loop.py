"""Does the control loop keep time while the data plane is saturated?

The control plane runs the gateway and every endpoint's reconciler on one event loop, so a
busy gateway could delay decisions. This measures how late each autoscaling decision runs
after its due time (the control plane's `ebbtide_controller_decision_lateness_seconds`
histogram), side by side in one run: the seed endpoint on the fast sample model idle, then
with 64 keep-alive connections sending through the gateway as fast as it answers (closed
loop, the lean client of bench/gateway.py).

    .venv/bin/python bench/control_loop.py [--seconds 20] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from ebbtide.api.client import ControlPlaneClient
from ebbtide.autoscaler import LOCAL
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.daemon import lifecycle

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import throughput

BODY = json.dumps(
    {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 64], "data": [1.0] * 64}]}
).encode()
SEED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "inference_endpoint.yaml"
NAME = "my-model-endpoint"
METRIC = "ebbtide_controller_decision_lateness_seconds"


def lateness_buckets(home: Path) -> dict[float, float]:
    """Cumulative counts per upper bound of the lateness histogram."""
    transport = httpx.HTTPTransport(uds=str(home / "control-plane.sock"))
    with httpx.Client(transport=transport, base_url="http://cp") as http:
        text = http.get("/metrics").text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{METRIC}_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


def quantile_bound(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """The smallest bucket bound that holds a fraction `q` of the decisions in between."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = counts[float("inf")]
    if total == 0:
        return "no decisions"
    for bound in sorted(counts):
        if counts[bound] >= q * total:
            return f"<= {bound * 1000:.0f} ms" if bound != float("inf") else "> 2.5 s"
    return "?"


def window(home: Path, seconds: float, connections: int) -> dict[str, Any]:
    """Decision lateness over `seconds`, with that many connections saturating the gateway."""
    before = lateness_buckets(home)
    rate = 0.0
    if connections == 0:
        SYSTEM_CLOCK.blocking_sleep(seconds)
    else:
        with ControlPlaneClient(home) as client:
            url = httpx.URL(client.get_endpoint("default", NAME)["status"]["url"])
        request = (
            f"POST {url.path}/v2/models/my-ml-model/infer HTTP/1.1\r\nhost: bench\r\n"
            f"content-type: application/json\r\ncontent-length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        rate = asyncio.run(throughput(url.port or 80, request, connections, seconds))
    after = lateness_buckets(home)
    decisions = after[float("inf")] - before.get(float("inf"), 0.0)
    return {
        "decisions": int(decisions),
        "p50": quantile_bound(before, after, 0.5),
        "p99": quantile_bound(before, after, 0.99),
        "rate": rate,
    }


def main() -> None:
    lifecycle.exit_on_sigterm()
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=64)
    arguments, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="ebbtide-loop-") as directory:
        home = Path(directory)
        env = {**os.environ, "EBBTIDE_HOME": str(home)}
        ebbtide = [sys.executable, "-m", "ebbtide"]
        lifecycle.start_detached(home, ["--gateway-port", "0"])
        try:
            subprocess.run(
                [*ebbtide, "model", "sample", "fast", "--as", "my-ml-model:v1"],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
            manifest = yaml.safe_load(SEED.read_text())
            manifest["spec"]["autoscaling"].update(minReplicas=2, maxReplicas=2)
            with ControlPlaneClient(home) as client:
                client.apply([manifest])
                while (client.get_endpoint("default", NAME).get("status") or {}).get(
                    "readyReplicas", 0
                ) < 2:
                    SYSTEM_CLOCK.blocking_sleep(0.1)
            idle = window(home, arguments.seconds, 0)
            busy = window(home, arguments.seconds, arguments.connections)
        finally:
            lifecycle.stop(home)
    print(
        f"decision lateness (local profile, {LOCAL.sync_period:g} s sync), "
        "2 replicas of the fast sample model"
    )
    print(f"{'gateway':<12}{'req/s':>8}{'decisions':>11}{'p50':>12}{'p99':>12}")
    for label, row in (("idle", idle), ("saturated", busy)):
        print(
            f"{label:<12}{row['rate']:>8.0f}{row['decisions']:>11}{row['p50']:>12}{row['p99']:>12}"
        )


if __name__ == "__main__":
    main()
