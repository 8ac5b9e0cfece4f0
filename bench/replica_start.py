"""Replica start, from the decision to ready, fresh against forked from a warm process; and the
memory (PSS) each added replica costs.

For each launcher, the same `Supervisor` the control plane uses starts `--starts` replicas of
the fast digits sample one after another, each kept running, and times `Supervisor.start()`
to the moment its readiness probe first passes (the supervisor probes every 20 ms). With the
warm fork, the warm process is started first (`prepare`), as it is once per model, and its
own start is reported apart. Once all replicas run and each has answered one inference, the
proportional set size of every replica is read (`psutil ... memory_full_info().pss`: shared
pages divided among the processes sharing them), with USS (pages only it holds) and RSS.

Run: `.venv/bin/python bench/replica_start.py [--starts 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.runtime.repository import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from ebbtide.supervisor import (
    Launcher,
    Replica,
    ReplicaTemplate,
    SubprocessLauncher,
    Supervisor,
    WarmForkLauncher,
)

MIB = 2**20
ROW = [float(v % 17) for v in range(64)]


@dataclass
class Result:
    launcher: str
    starts: list[float]
    pss: list[float]
    uss: list[float]
    rss: list[float]
    warm_start: float | None = None
    warm_pss: float | None = None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def start_ready(supervisor: Supervisor, template: ReplicaTemplate) -> tuple[Replica, float]:
    """Start one replica; the seconds from the decision until its first passed probe."""
    became_ready = asyncio.Event()
    started = SYSTEM_CLOCK.now()
    replica = supervisor.start(template)
    supervisor.subscribe(lambda changed: became_ready.set() if changed.ready else None)
    await asyncio.wait_for(became_ready.wait(), 120)
    return replica, SYSTEM_CLOCK.now() - started


async def measure(name: str, launcher: Launcher, template: ReplicaTemplate, logs: Path,
                  starts: int) -> Result:  # fmt: skip
    supervisor = Supervisor(launcher, logs)
    result = Result(name, [], [], [], [])
    try:
        if isinstance(launcher, WarmForkLauncher):
            began = SYSTEM_CLOCK.now()
            problem = await launcher.prepare(template, logs)
            assert problem is None, problem
            result.warm_start = SYSTEM_CLOCK.now() - began
        replicas = []
        for _ in range(starts):
            replica, seconds = await start_ready(supervisor, template)
            replicas.append(replica)
            result.starts.append(seconds)
        async with httpx.AsyncClient(timeout=10) as client:
            for replica in replicas:
                body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 64],
                                    "data": ROW}]}  # fmt: skip
                url = f"http://{replica.address}/v2/models/{template.model_name}/infer"
                (await client.post(url, json=body)).raise_for_status()
        for replica in replicas:
            memory = psutil.Process(replica.pid).memory_full_info()
            result.pss.append(memory.pss / MIB)
            result.uss.append(memory.uss / MIB)
            result.rss.append(memory.rss / MIB)
        if isinstance(launcher, WarmForkLauncher):
            [warm_pid] = launcher.warm_pids()
            result.warm_pss = psutil.Process(warm_pid).memory_full_info().pss / MIB
    finally:
        await supervisor.stop_all()
    return result


def report(results: list[Result], starts: int) -> None:
    print(f"\n{starts} replicas of sample-fast started one after another, all kept running\n")
    print("| launcher | start p50 s | start p90 s | start max s | PSS MiB/replica | "
          "USS MiB/replica | RSS MiB/replica | total PSS MiB |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        total = sum(r.pss) + (r.warm_pss or 0.0)
        print(
            f"| {r.launcher} | {statistics.median(r.starts):.3f} | {percentile(r.starts, 0.9):.3f}"
            f" | {max(r.starts):.3f} | {statistics.mean(r.pss):.1f} | {statistics.mean(r.uss):.1f}"
            f" | {statistics.mean(r.rss):.1f} | {total:.0f} |"
        )
    for r in results:
        if r.warm_start is not None:
            print(
                f"\nwarm process: started and loaded in {r.warm_start:.2f} s (once per model), "
                f"PSS {r.warm_pss:.1f} MiB (counted in its total PSS)"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--starts", type=int, default=10, help="replicas per launcher")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ebbtide-bench-start-") as scratch:
        root = Path(scratch)
        repository = ModelRepository(root / "models")
        ensure_sample("fast", repository)
        template = ReplicaTemplate("default", "bench", "sample-fast", "v1", repository.root)
        results = []
        for name, launcher in (("fresh", SubprocessLauncher()), ("warm fork", WarmForkLauncher())):
            logs = root / name.replace(" ", "-")
            logs.mkdir()
            results.append(await measure(name, launcher, template, logs, args.starts))
        report(results, args.starts)


if __name__ == "__main__":
    asyncio.run(main())
