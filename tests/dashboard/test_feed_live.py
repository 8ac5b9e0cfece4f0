"""The feed as a script reads it, from a real control plane: an endpoint idle at zero, woken by
a request, and back to zero, each change in the trail with its reason."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ebbtide.api.client import ControlPlaneClient
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.dashboard.server import FEED_PATH, url_file
from ebbtide.runtime import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from tests.conftest import start_control_plane, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
NAME = "zero-endpoint"
ENDPOINT = {
    "apiVersion": "mlops.example.com/v1",
    "kind": "InferenceEndpoint",
    "metadata": {"name": NAME},
    "spec": {
        "model": {"name": "my-ml-model", "version": "v1"},
        "autoscaling": {
            "minReplicas": 0,
            "maxReplicas": 2,
            "targetCPUUtilizationPercentage": 60,
            "scaleToZero": {"idleSeconds": 2},
        },
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
    },
}


@pytest.fixture
def plane(ebbtide_home: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    repository = tmp_path / "models"
    ensure_sample("fast", ModelRepository(repository), name="my-ml-model", version="v1")
    process = start_control_plane(
        ebbtide_home, "--repository", str(repository), "--dashboard-port", "0"
    )
    yield process
    stop_process(process)


def entry(feed: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in feed["endpoints"] if e["name"] == NAME)


def test_zero_a_request_that_wakes_it_and_the_way_back_are_in_the_feed(
    ebbtide_home: Path, plane: subprocess.Popen[bytes]
) -> None:
    with ControlPlaneClient(ebbtide_home) as client:
        client.apply([ENDPOINT])
    feed_url = url_file(ebbtide_home).read_text().strip().rstrip("/") + FEED_PATH
    with httpx.Client(timeout=10) as http:

        def feed(since: int = 0) -> dict[str, Any]:
            response = http.get(feed_url, params={"since": since})
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        def wait_for_phase(phase: str, timeout: float) -> dict[str, Any]:
            deadline = SYSTEM_CLOCK.now() + timeout
            while SYSTEM_CLOCK.now() < deadline:
                endpoints = [e for e in feed(10**9)["endpoints"] if e["name"] == NAME]
                if endpoints and endpoints[0]["state"]["phase"] == phase:
                    return endpoints[0]
                SYSTEM_CLOCK.blocking_sleep(0.2)
            raise AssertionError(f"the endpoint never showed as {phase}")

        idle = wait_for_phase("ScaledToZero", 30)
        assert idle["replicas"]["ready"] == 0
        assert idle["state"]["message"] == "idle at zero replicas; a request wakes it"
        url = idle["url"]

        async def burst() -> list[int]:
            body = {
                "inputs": [
                    {"name": "input-0", "datatype": "FP64", "shape": [1, 64], "data": [0.0] * 64}
                ]
            }
            async with httpx.AsyncClient(timeout=60) as requests:
                answers = await asyncio.gather(
                    *(
                        requests.post(f"{url}/v2/models/my-ml-model/infer", json=body)
                        for _ in range(5)
                    )
                )
            return [a.status_code for a in answers]

        assert asyncio.run(burst()) == [200] * 5
        awake = wait_for_phase("Ready", 30)
        assert awake["replicas"]["ready"] >= 1
        back = wait_for_phase("ScaledToZero", 30)

        woke = next(r for r in back["trail"] if r["from"] == 0 and r["to"] >= 1)
        # The gateway's wake-up call, or a decision that saw the requests first.
        assert woke["reason"] in ("request at zero", "request arrived while scaled to zero"), woke
        slept = back["trail"][-1]
        assert slept["reason"] == "idle for 2 s", slept
        assert slept["explanation"].startswith("scaling down 1 → 0: no request for 2 s"), slept

        # The whole history once, then only what is new: the series of an update are short.
        whole = feed()
        series = entry(whole)["series"]
        # From before the wake-up to after the way back (a quiet machine does both in 4 s).
        assert series["time"][0] <= woke["time"] <= slept["time"] <= series["time"][-1] + 1
        assert len(series["time"]) >= 3
        assert max(v for v in series["offered"] if v is not None) > 0
        assert max(series["ready"]) >= 1
        assert series["desired"][-1] == 0
        SYSTEM_CLOCK.blocking_sleep(2.2)
        update = feed(whole["sequence"])
        assert update["sequence"] > whole["sequence"]
        assert 1 <= len(entry(update)["series"]["time"]) <= 4
        assert entry(update)["series"]["time"][0] > series["time"][-1]
