"""Faults of the control plane and the gateway under steady load, counted in failed requests.

    .venv/bin/python bench/control_plane_faults.py [--rate 30] [--seconds 10]

Runs a control plane as `ebbtide up --detach` does (with its keeper) on a fresh state
directory, the heavy sample model behind an endpoint with two replicas, and sends `--rate`
requests a second through the gateway for `--seconds` while, one scenario after the other:

- `kill -9` of the control plane (the keeper starts another, which adopts the data plane);
- `ebbtide restart` (a hand-over to a new control plane, as an upgrade does);
- `kill -9` of the gateway worker (the control plane starts another on the same socket).

For each: requests sent and failed, whether the pods are the same (names and pids), how long
until the replacement ran, and for the control plane how soon after its start it decided.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from ebbtide.api.client import ControlPlaneClient
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.processes import ProcessIdentity
from ebbtide.daemon import lifecycle
from ebbtide.loadgen.requests import example_request
from ebbtide.loadgen.runner import Outcome, run_open_loop
from ebbtide.loadgen.schedule import constant
from ebbtide.runtime import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from ebbtide.store import SqliteStore

NAME = "faults"
SEED = Path(__file__).parent.parent / "tests" / "fixtures" / "inference_endpoint.yaml"


def pods(home: Path) -> dict[str, int]:
    with ControlPlaneClient(home) as client:
        return {
            p["metadata"]["name"]: p["status"]["pid"]
            for p in client.list_pods("default", f"app={NAME}")
        }


def gateway(home: Path) -> ProcessIdentity:
    store = SqliteStore(home / "state.db")
    try:
        [record] = store.processes("gateway").values()
    finally:
        store.close()
    return ProcessIdentity.from_record(record)


def control_plane_pid(home: Path) -> int:
    return int((home / "control-plane.pid").read_text())


def until(check: Callable[[], bool], timeout: float) -> float:
    began = SYSTEM_CLOCK.now()
    while not check():
        if SYSTEM_CLOCK.now() - began > timeout:
            raise RuntimeError("timed out")
        SYSTEM_CLOCK.blocking_sleep(0.01)
    return SYSTEM_CLOCK.now() - began


def load(
    url: str, body: dict[str, object], rate: float, seconds: float, fault: Callable[[], None]
) -> list[Outcome]:
    async def run() -> list[Outcome]:
        async with httpx.AsyncClient(timeout=30) as http:

            async def send() -> int:
                return (await http.post(url, json=body)).status_code

            async def inject() -> None:
                await asyncio.sleep(seconds * 0.3)
                await asyncio.to_thread(fault)

            injecting = asyncio.create_task(inject())
            outcomes = await run_open_loop(send, constant(rate, seconds), SYSTEM_CLOCK)
            await injecting
            return outcomes

    return asyncio.run(run())


def seconds_in(home: Path, before: str, after: str) -> list[float]:
    """Every figure the control plane's log wrote between `before` and `after`."""
    log = (home / "logs" / "control-plane.log").read_text()
    return [
        float(line.split(before, 1)[1].split(after, 1)[0])
        for line in log.splitlines()
        if before in line and after in line
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ebbtide-faults-"))
    home, models = root / "home", root / "models"
    ensure_sample("heavy", ModelRepository(models), name="heavy-model", version="v1")
    lifecycle.start_detached(home, ["--gateway-port", "0", "--repository", str(models)])
    try:
        document = yaml.safe_load(SEED.read_text())
        document["metadata"]["name"] = NAME
        document["spec"]["model"]["name"] = "heavy-model"
        document["spec"]["autoscaling"].update(minReplicas=2, maxReplicas=2)
        with ControlPlaneClient(home) as client:
            client.apply([document])
            until(
                lambda: client.get_endpoint("default", NAME)["status"].get("readyReplicas") == 2,
                120,
            )
            url = client.get_endpoint("default", NAME)["status"]["url"] + "/v2/models/heavy-model"
        body = example_request(httpx.get(url, timeout=10).json(), random.Random(7))
        rows = []
        replacement: list[float] = []

        def kill_control_plane() -> None:
            pid = control_plane_pid(home)
            os.kill(pid, signal.SIGKILL)
            replacement.append(
                until(lambda: control_plane_pid(home) != pid and lifecycle.is_running(home), 30)
            )

        def upgrade() -> None:
            began = SYSTEM_CLOCK.now()
            lifecycle.restart(home)
            replacement.append(SYSTEM_CLOCK.now() - began)

        def kill_gateway() -> None:
            worker = gateway(home)
            os.kill(worker.pid, signal.SIGKILL)
            replacement.append(until(lambda: gateway(home) != worker, 10))

        for label, fault in (
            ("kill -9 control plane", kill_control_plane),
            ("ebbtide restart", upgrade),
            ("kill -9 gateway", kill_gateway),
        ):
            before = pods(home)
            outcomes = load(url + "/infer", body, args.rate, args.seconds, fault)
            failed = [o for o in outcomes if not o.ok]
            same = pods(home) == before
            rows.append((label, len(outcomes), len(failed), same, replacement[-1], failed))
        up = seconds_in(home, "control plane up in ", " s:")
        decided = seconds_in(home, f"first decision for default/{NAME} ", " s after")
    finally:
        lifecycle.stop(home)
    print(
        f"{args.rate:g} requests/s for {args.seconds:g} s per scenario, heavy sample model, "
        f"2 replicas; {os.cpu_count()} cores"
    )
    print(f"{'fault':<24}{'sent':>6}{'failed':>8}{'same pods':>11}{'replaced in s':>15}")
    for label, sent, failed_count, same, took, failed in rows:
        print(f"{label:<24}{sent:>6}{failed_count:>8}{'yes' if same else 'no':>11}{took:>15.2f}")
        for outcome in failed[:5]:
            print(f"    {outcome.error or outcome.status}")
    print("each control plane, from its start (s): up (adopted all, answering) / first decision")
    for number, (ready, decision) in enumerate(zip(up, decided, strict=False), 1):
        print(
            f"    {number}: {ready:.2f} / {decision:.2f}   decided {decision - ready:.2f} after up"
        )


if __name__ == "__main__":
    main()
