"""What an open dashboard costs the control plane, and how large its feed is.

A real control plane serves the fast sample under steady open-loop load through its gateway.
Rounds alternate between no page and the page open in headless Chromium (rounds of equal
length, so a slow spell of a shared machine hits both alike). For each, it prints the control
plane process's CPU (its replicas excluded) and its resident memory; for the open page, the
feed's bytes per second on the wire (gzip as the browser gets it, headers included) and the
size of the first, whole-history load.

    .venv/bin/python bench/dashboard.py            # --rounds 4 --seconds 15 --rate 40
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from playwright.sync_api import Page, sync_playwright

from ebbtide.api.client import ControlPlaneClient
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.daemon.lifecycle import is_running
from ebbtide.dashboard.server import FEED_PATH, url_file
from ebbtide.loadgen.requests import example_request
from ebbtide.runtime import ModelRepository
from ebbtide.runtime.samples import ensure_sample

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ENDPOINT = {
    "apiVersion": "mlops.example.com/v1",
    "kind": "InferenceEndpoint",
    "metadata": {"name": "bench-endpoint"},
    "spec": {
        "model": {"name": "bench-model", "version": "v1"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 2, "targetCPUUtilizationPercentage": 60},
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
    },
}


WIRE = """(path) => performance.getEntriesByType("resource")
    .filter((entry) => entry.name.includes(path))
    .map((entry) => entry.transferSize)"""
"""Bytes on the wire (headers and compressed body) of each feed response the page received."""


@dataclass
class Wire:
    """Feed responses the open pages received."""

    sizes: list[int] = field(default_factory=list)

    def add(self, page: Page) -> None:
        self.sizes.extend(page.evaluate(WIRE, FEED_PATH))


def steady_load(url: str, body: dict[str, Any], rate: float, stop: threading.Event) -> None:
    rng = random.Random(1)
    with httpx.Client(timeout=10) as client:
        due = SYSTEM_CLOCK.now()
        while not stop.is_set():
            due += rng.expovariate(rate)
            SYSTEM_CLOCK.blocking_sleep(max(0.0, due - SYSTEM_CLOCK.now()))
            with contextlib.suppress(httpx.HTTPError):
                client.post(url, json=body)


def measure(process: psutil.Process, seconds: float) -> tuple[float, float]:
    """CPU percent of one core and RSS MiB of the control plane over `seconds`."""
    before = process.cpu_times()
    SYSTEM_CLOCK.blocking_sleep(seconds)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / seconds, process.memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=40.0, help="Requests/s of steady load.")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ebbtide-bench-dashboard-") as directory:
        home = Path(directory) / "home"
        repository = Path(directory) / "models"
        ensure_sample("fast", ModelRepository(repository), name="bench-model", version="v1")
        command = [sys.executable, "-m", "ebbtide.daemon", "--home", str(home)]
        command += ["--gateway-port", "0", "--dashboard-port", "0"]
        command += ["--repository", str(repository)]
        plane = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run(home, plane.pid, options)
        finally:
            plane.terminate()
            plane.wait(timeout=30)


def run(home: Path, pid: int, options: argparse.Namespace) -> None:
    deadline = SYSTEM_CLOCK.now() + 30
    while not is_running(home) and SYSTEM_CLOCK.now() < deadline:
        SYSTEM_CLOCK.blocking_sleep(0.1)
    with ControlPlaneClient(home) as client:
        client.apply([ENDPOINT])
        while (client.get_endpoint("default", "bench-endpoint").get("status") or {}).get(
            "readyReplicas", 0
        ) < 2:
            SYSTEM_CLOCK.blocking_sleep(0.2)
        endpoint_url = client.get_endpoint("default", "bench-endpoint")["status"]["url"]
    model = f"{endpoint_url}/v2/models/bench-model/versions/v1"
    body = example_request(httpx.get(model, timeout=10).json(), random.Random(0))
    stop = threading.Event()
    loader = threading.Thread(target=steady_load, args=(f"{model}/infer", body, options.rate, stop))
    loader.start()
    process = psutil.Process(pid)
    url = url_file(home).read_text().strip()
    closed: list[tuple[float, float]] = []
    opened: list[tuple[float, float]] = []
    wire = Wire()
    try:
        SYSTEM_CLOCK.blocking_sleep(options.seconds)  # the ring fills; the load settles
        with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
            )
            for _ in range(options.rounds):
                closed.append(measure(process, options.seconds))
                page = context.new_page()
                page.goto(url)
                page.evaluate("performance.setResourceTimingBufferSize(100000)")
                page.wait_for_selector("section[data-endpoint]")
                opened.append(measure(process, options.seconds))
                wire.add(page)
                page.close()
            context.close()
        whole = httpx.get(url.rstrip("/") + FEED_PATH, headers={"accept-encoding": "gzip"})
    finally:
        stop.set()
        loader.join()
    report(closed, opened, wire, whole, options)


def report(
    closed: list[tuple[float, float]],
    opened: list[tuple[float, float]],
    wire: Wire,
    whole: httpx.Response,
    options: argparse.Namespace,
) -> None:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    cpu_closed, cpu_open = mean([c for c, _ in closed]), mean([c for c, _ in opened])
    rss_closed, rss_open = mean([r for _, r in closed]), mean([r for _, r in opened])
    seconds = options.rounds * options.seconds
    points = len(whole.json()["endpoints"][0]["series"]["time"])
    print(
        f"control plane under {options.rate:.0f} req/s through its gateway, "
        f"{options.rounds} rounds of {options.seconds:.0f} s each way (machine: {os.cpu_count()} "
        "cores, shared)"
    )
    print("| page | control plane CPU (% of a core) | RSS MiB |")
    print("| --- | ---: | ---: |")
    print(f"| closed | {cpu_closed:.1f} | {rss_closed:.1f} |")
    print(f"| open | {cpu_open:.1f} | {rss_open:.1f} |")
    print(f"| open - closed | {cpu_open - cpu_closed:+.1f} | {rss_open - rss_closed:+.1f} |")
    updates = sorted(wire.sizes)
    median = updates[len(updates) // 2] if updates else 0
    print(
        f"feed with the page open: {len(wire.sizes)} responses in {seconds:.0f} s, "
        f"{sum(wire.sizes) / seconds:.0f} bytes/s on the wire (gzip, headers included), "
        f"median response {median} bytes"
    )
    print(
        f"whole history ({points} samples of one endpoint): {whole.num_bytes_downloaded} bytes "
        f"gzip, {len(whole.content)} bytes of JSON "
        f"({whole.num_bytes_downloaded / max(1, points):.0f} bytes gzip per sample)"
    )


if __name__ == "__main__":
    main()
