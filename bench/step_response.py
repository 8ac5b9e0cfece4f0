"""Step response: seconds from a 4x load step until added replicas serve traffic.

One control plane per scaling profile, side by side in one run: ebbtide's `local` profile and
the `kubernetes` profile (the HPA's own defaults: 15 s sync, 5 min scale-down window). Each
serves the seed endpoint on the CPU-heavy sample model, takes a steady base load, then four
times that. Reported per profile: seconds from the step to the first added replica in
rotation, to the peak count, and p50/p99 latency during the 20 s after the step.

    .venv/bin/python bench/step_response.py [--base 25] [--after 25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from ebbtide.api.client import ControlPlaneClient
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.daemon import lifecycle
from ebbtide.loadgen.requests import example_request
from ebbtide.loadgen.runner import percentile

SEED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "inference_endpoint.yaml"
NAME = "my-model-endpoint"
JSON = {"content-type": "application/json"}


def run_profile(profile: str, base: float, after: float, repository: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"ebbtide-step-{profile}-") as directory:
        home = Path(directory)
        options = ["--gateway-port", "0", "--profile", profile, "--repository", str(repository)]
        lifecycle.start_detached(home, options)
        try:
            return asyncio.run(measure(home, base, after))
        finally:
            lifecycle.stop(home)


async def measure(home: Path, base: float, after: float) -> dict[str, Any]:
    client = ControlPlaneClient(home)
    manifest = _seed_manifest()
    client.apply([manifest])
    while _ready(client) < 1:
        await asyncio.sleep(0.05)
    model_url = client.get_endpoint("default", NAME)["status"]["url"] + "/v2/models/my-ml-model"
    metadata = httpx.get(model_url, timeout=10).json()
    body = json.dumps(example_request(metadata, random.Random(0)))
    url = model_url + "/infer"
    latencies: list[tuple[float, float]] = []
    ready_log: list[tuple[float, int]] = []
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=512)) as http:

        async def one() -> None:
            began = SYSTEM_CLOCK.now()
            response = await http.post(url, content=body, headers=JSON)
            response.raise_for_status()
            latencies.append((began, SYSTEM_CLOCK.now() - began))

        async def watch() -> None:
            while True:
                ready = await asyncio.to_thread(_ready, client)
                ready_log.append((SYSTEM_CLOCK.now(), ready))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        tasks = []
        start = SYSTEM_CLOCK.now()
        step_at = start + 15.0
        end = step_at + after
        while SYSTEM_CLOCK.now() < end:
            rate = base if SYSTEM_CLOCK.now() < step_at else 4 * base
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
        watcher.cancel()
    client.close()
    before = max((count for at, count in ready_log if at < step_at), default=1)
    added = next(
        (at - step_at for at, count in ready_log if at >= step_at and count > before), None
    )
    peak = max(count for _, count in ready_log)
    peak_at = next(at - step_at for at, count in ready_log if count == peak and at >= step_at)
    during = [lat for began, lat in latencies if step_at <= began < step_at + 20]
    return {
        "before": before,
        "added_s": added,
        "peak": peak,
        "peak_s": peak_at,
        "p50_ms": percentile(during, 0.5) * 1000,
        "p99_ms": percentile(during, 0.99) * 1000,
        "requests": len(latencies),
    }


def _ready(client: ControlPlaneClient) -> int:
    status = client.get_endpoint("default", NAME).get("status") or {}
    return int(status.get("readyReplicas", 0))


def _seed_manifest() -> dict[str, Any]:
    import yaml

    document: dict[str, Any] = yaml.safe_load(SEED.read_text())
    return document


def main() -> None:
    lifecycle.exit_on_sigterm()
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=float, default=25.0, help="requests/s before the step")
    parser.add_argument("--after", type=float, default=25.0, help="seconds after the step")
    arguments, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="ebbtide-step-models-") as models:
        subprocess.run(
            [sys.executable, "-m", "ebbtide", "model", "sample", "heavy", "--as", "my-ml-model:v1",
             "--repository", models],
            check=True, capture_output=True,
        )  # fmt: skip
        rows = {
            profile: run_profile(profile, arguments.base, arguments.after, Path(models))
            for profile in ("local", "kubernetes")
        }
    steps = f"{arguments.base:.0f} -> {4 * arguments.base:.0f} req/s"
    print(f"step {steps}, heavy sample model, seed endpoint")
    print(f"{'profile':<12}{'added (s)':>11}{'peak':>6}{'peak (s)':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for profile, row in rows.items():
        added = "never" if row["added_s"] is None else f"{row['added_s']:.2f}"
        print(
            f"{profile:<12}{added:>11}{row['peak']:>6}{row['peak_s']:>10.2f}"
            f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
        )
    local, kube = rows["local"], rows["kubernetes"]
    if local["added_s"] and kube["added_s"]:
        ratio = kube["added_s"] / local["added_s"]
        print(f"local adds capacity {ratio:.1f}x sooner than the HPA defaults")


if __name__ == "__main__":
    main()
