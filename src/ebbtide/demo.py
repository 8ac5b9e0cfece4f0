"""`make demo`: the seed endpoint serving a real model, scaling up under load and back down.

It runs the seed walkthrough for real on a temporary state directory: a control plane, the
CPU-heavy sample model registered as `my-ml-model` v1, the seed's `inference_endpoint.yaml`
applied unchanged, then open-loop load that rises in steps and stops. Once a second it prints
the replicas, CPU utilization against the target, the request rate and the p99 latency, and
along the way the seed's own commands with their output. Everything it starts, it stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shlex
import sys
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from ebbtide.api.client import ControlPlaneClient
from ebbtide.cli.browser import open_in_browser
from ebbtide.cli.main import app
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.daemon import lifecycle
from ebbtide.dashboard.server import url_file
from ebbtide.loadgen.requests import example_request
from ebbtide.loadgen.runner import percentile

SEED_FILE = "inference_endpoint.yaml"
SEED_TEXT = """\
apiVersion: mlops.example.com/v1
kind: InferenceEndpoint
metadata:
  name: my-model-endpoint
spec:
  model:
    name: my-ml-model
    version: v1
  autoscaling:
    minReplicas: 1
    maxReplicas: 5
    targetCPUUtilizationPercentage: 60
  resources:
    requests:
      cpu: 500m
      memory: 1Gi
    limits:
      cpu: 1
      memory: 2Gi
"""
NAME = "my-model-endpoint"
JSON = {"content-type": "application/json"}
PHASES: tuple[tuple[str, float, float], ...] = (
    ("warm", 10.0, 15.0),
    ("rise", 40.0, 15.0),
    ("peak", 70.0, 30.0),
    ("fall", 10.0, 15.0),
    ("quiet", 0.0, 45.0),
)
"""(name, requests per second, seconds). A request costs the heavy sample about 10 ms of CPU
(more when replicas share the cores with the gateway and this load generator), so the peak asks
for about 0.7-0.8 cores: three or four replicas at 60% of 500m, still within two cores, so the
latency shows scaling rather than a saturated machine."""


@dataclass
class Traffic:
    """What the load generator saw in the last seconds."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4000))

    def window(self, now: float, seconds: float = 5.0) -> tuple[float, float]:
        latencies = [lat for at, lat in self.recent if now - at <= seconds]
        return len(latencies) / seconds, percentile(latencies, 0.99) * 1000


def command_output(*args: str) -> str:
    """Run an `ebbtide` command in-process; what a terminal would show for it."""
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise SystemExit(f"`ebbtide {shlex.join(args)}` failed:\n{result.output}")
    return f"\n$ ebbtide {shlex.join(args)}\n{result.output.rstrip()}"


def shell(*args: str) -> None:
    print(command_output(*args), flush=True)


PEAK_COMMANDS = (
    ("get", "pods", "-l", f"app={NAME}"),
    ("top", "pods", "-l", f"app={NAME}"),
    ("get", "hpa", NAME),
)
"""The seed's inspection commands, shown two thirds into the peak, while the load goes on."""


def show_peak_commands() -> None:
    # In a worker thread, so the load generator's loop keeps sending and timing requests;
    # printed in one piece once every command has answered.
    print("".join(command_output(*command) for command in PEAK_COMMANDS), flush=True)


def status_line(client: ControlPlaneClient, traffic: Traffic, phase: str, rate: float) -> str:
    endpoint = client.get_endpoint("default", NAME)
    status = endpoint.get("status") or {}
    metrics: list[dict[str, Any]] = status.get("currentMetrics", [])
    cpu = next((m for m in metrics if m.get("name") == "cpu"), {})
    utilization = cpu.get("averageUtilization")
    now = SYSTEM_CLOCK.now()
    served, p99 = traffic.window(now)
    replicas = f"{status.get('readyReplicas', 0)}/{status.get('desiredReplicas', 0)}"
    util = f"{utilization}%" if utilization is not None else "<unknown>"
    bar = "#" * int(status.get("readyReplicas", 0))
    return (
        f"{phase:>5}  offered {rate:5.0f} req/s  served {served:5.1f} req/s  p99 {p99:6.1f} ms  "
        f"cpu {util:>9}/60%  replicas {replicas:>4} {bar}"
    )


async def drive(
    url: str, body: dict[str, Any], traffic: Traffic, client: ControlPlaneClient
) -> None:
    """Open-loop load through the phases, with a status line each second."""
    rng = random.Random(7)
    payload = json.dumps(body).encode()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def one() -> None:
            began = SYSTEM_CLOCK.now()
            try:
                response = await http.post(
                    url, content=payload, headers={"content-type": "application/json"}
                )
                good = response.status_code == 200
            except httpx.HTTPError:
                good = False
            traffic.ok += good
            traffic.failed += not good
            traffic.recent.append((SYSTEM_CLOCK.now(), SYSTEM_CLOCK.now() - began))

        tasks: set[asyncio.Task[None]] = set()
        inspection: asyncio.Task[None] | None = None
        for phase, rate, seconds in PHASES:
            end = SYSTEM_CLOCK.now() + seconds
            next_line = SYSTEM_CLOCK.now()
            while SYSTEM_CLOCK.now() < end:
                if (
                    phase == "peak"
                    and inspection is None
                    and end - SYSTEM_CLOCK.now() < seconds / 3
                ):
                    inspection = asyncio.create_task(asyncio.to_thread(show_peak_commands))
                if SYSTEM_CLOCK.now() >= next_line:
                    if inspection is None or inspection.done():
                        print(status_line(client, traffic, phase, rate), flush=True)
                    next_line += 1.0
                if rate <= 0:
                    await SYSTEM_CLOCK.sleep(0.1)
                    continue
                await SYSTEM_CLOCK.sleep(rng.expovariate(rate))
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                traffic.sent += 1
        if inspection is not None:
            await inspection
        await asyncio.gather(*tasks)


def main() -> None:
    lifecycle.exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="ebbtide-demo-") as directory:
        home = Path(directory) / "home"
        os.environ["EBBTIDE_HOME"] = str(home)
        seed = Path(directory) / SEED_FILE
        seed.write_text(SEED_TEXT)
        print(f"state directory: {home}")
        # Free ports: the demo runs beside any other control plane on the machine.
        started = lifecycle.start_detached(home, ["--gateway-port", "0"])
        print(f"control plane running (pid {started.pid})")
        show_dashboard(home)
        try:
            run(home, seed)
        finally:
            lifecycle.stop(home)
            print("\ncontrol plane stopped; every replica with it")


def show_dashboard(home: Path) -> None:
    """The dashboard's URL first, so the whole run can be watched on it; a browser opens on
    it where there is a screen."""
    url = url_file(home).read_text().strip()
    opened = open_in_browser(url)
    print(f"\ndashboard: {url}  <- {'opened in your browser' if opened else 'open it to watch'}")
    print("(replicas, load, latency and each decision with its reason, live)\n", flush=True)


def run(home: Path, seed: Path) -> None:
    shell("model", "sample", "heavy", "--as", "my-ml-model:v1")
    os.chdir(seed.parent)
    shell("apply", "-f", SEED_FILE)
    client = ControlPlaneClient(home)
    deadline = SYSTEM_CLOCK.now() + 60
    while (client.get_endpoint("default", NAME).get("status") or {}).get("readyReplicas", 0) < 1:
        if SYSTEM_CLOCK.now() > deadline:
            raise SystemExit("the first replica did not become ready within 60 s")
        SYSTEM_CLOCK.blocking_sleep(0.1)
    shell("get", "pods", "-l", f"app={NAME}")
    endpoint = client.get_endpoint("default", NAME)
    url = endpoint["status"]["url"]
    metadata = httpx.get(f"{url}/v2/models/my-ml-model/versions/v1", timeout=10).json()
    body = example_request(metadata, random.Random(0))
    traffic = Traffic()
    print(
        "\nload: "
        + ", ".join(f"{name} {rate:.0f} req/s for {secs:.0f}s" for name, rate, secs in PHASES)
    )
    asyncio.run(drive(f"{url}/v2/models/my-ml-model/infer", body, traffic, client))
    shell("get", "hpa", NAME)
    shell("get", "pods", "-l", f"app={NAME}")
    shell("describe", "ie", NAME)
    print(f"\nrequests: {traffic.sent} sent, {traffic.ok} succeeded, {traffic.failed} failed")
    client.close()
    if traffic.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
