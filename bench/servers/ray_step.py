"""A live Ray Serve deployment under one planned load: the Ray half of bench/ray_serve_step.py.

Run with an interpreter that has `ray[serve]` (a benchmark-only environment; Ray is not a
dependency of ebbtide):

    RAY_PYTHON plan.json result.json

`plan.json` holds the arrivals (seconds from the start) and each request's CPU seconds, and the
autoscaling settings; the deployment burns exactly that much CPU per request (thread CPU time,
so a busy machine stretches it as it would a model) in a plain `def` handler, which Ray Serve
runs in its thread pool: the requests a replica holds share its core, as threads do. The
load is open loop: request i is sent at its arrival time whatever happened to earlier ones.
Every 0.25 s the replica states are read from `serve.status()`. `result.json` gets the
requests (arrival, status, latency) and the replica series (time, all replicas, running).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import ray
from ray import serve
from starlette.requests import Request

APP = "burn"
PORT = 8765


def build(settings: dict[str, Any]) -> Any:
    @serve.deployment(
        name="Burn",
        max_ongoing_requests=settings["max_ongoing_requests"],
        autoscaling_config={
            "min_replicas": settings["min_replicas"],
            "initial_replicas": settings["min_replicas"],
            "max_replicas": settings["max_replicas"],
            "target_ongoing_requests": settings["target_ongoing_requests"],
            "upscale_delay_s": settings["upscale_delay_s"],
            "downscale_delay_s": settings["downscale_delay_s"],
            "look_back_period_s": settings["look_back_period_s"],
        },
        ray_actor_options={"num_cpus": 0.25},
        logging_config={"enable_access_log": False},
    )
    class Burn:
        def __call__(self, request: Request) -> dict[str, float]:
            cpu = float(request.query_params["cpu"])
            end = time.thread_time() + cpu
            while time.thread_time() < end:
                pass
            return {"cpu": cpu}

    return Burn.bind()


def replica_counts() -> tuple[int, int]:
    status = serve.status().applications[APP].deployments["Burn"]
    states = {str(state): count for state, count in status.replica_states.items()}
    running = sum(count for state, count in states.items() if state.endswith("RUNNING"))
    return sum(states.values()), running


def watch(start: float, series: list[tuple[float, int, int]], stop: threading.Event) -> None:
    while not stop.is_set():
        total, running = replica_counts()
        series.append((time.monotonic() - start, total, running))
        stop.wait(0.25)


async def send(plan: dict[str, Any], start: float) -> list[tuple[float, int, float]]:
    url = f"http://127.0.0.1:{PORT}/"
    results: list[tuple[float, int, float]] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(at: float, cpu: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            sent = time.monotonic()
            try:
                async with session.post(url, params={"cpu": f"{cpu:.6f}"}) as response:
                    await response.read()
                    code = response.status
            except (aiohttp.ClientError, TimeoutError):
                code = 0
            results.append((at, code, time.monotonic() - sent))

        await asyncio.gather(
            *(one(at, cpu) for at, cpu in zip(plan["arrivals"], plan["cpu"], strict=True))
        )
    return sorted(results)


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    ray.init(num_cpus=4, include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(build(plan["settings"]), name=APP, route_prefix="/")
    httpx.post(f"http://127.0.0.1:{PORT}/", params={"cpu": 0.001}, timeout=60).raise_for_status()
    series: list[tuple[float, int, int]] = []
    stop = threading.Event()
    start = time.monotonic() + 1.0
    watcher = threading.Thread(target=watch, args=(start, series, stop), daemon=True)
    watcher.start()
    try:
        requests = asyncio.run(send(plan, start))
        time.sleep(1.0)
    finally:
        stop.set()
        watcher.join(5)
        serve.shutdown()
        ray.shutdown()
    Path(sys.argv[2]).write_text(json.dumps({"requests": requests, "replicas": series}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
