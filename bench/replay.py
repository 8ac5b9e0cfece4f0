"""Live replay against the simulator: one trace window served live, then simulated with the
simulator's inputs measured on the same live system, side by side.

1. Calibrate on a control plane of its own: a constant load on one replica of the CPU-heavy
   sample gives the replica CPU milliseconds per request (from each replica's /metrics); three
   manual scale-ups by one replica give the start time (scale request to the new replica first
   seen ready, polled every 10 ms).
2. Replay on a fresh control plane (seed endpoint, local profile, one replica at the start):
   the window's arrivals sent open loop through the gateway, every latency recorded, the
   endpoint's status sampled every 0.5 s.
3. Simulate the same arrivals (the very same offsets) with ebbtide's default policy for the
   same endpoint, the calibrated CPU and start time, one replica at the start.

    .venv/bin/python bench/replay.py [--speedup 10] [--rate-scale 1.5] [--duration 120]
        [--plot docs/img/replay.png] [--objective 100]

`--objective MS` sets the endpoint's latency objective (p99 within MS), live and simulated,
and scores both against it instead of 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from ebbtide.api.client import ControlPlaneClient
from ebbtide.autoscaler import LOCAL, policy_for
from ebbtide.autoscaler.objective import NOT_LOWERED
from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.daemon import lifecycle
from ebbtide.loadgen.requests import example_request
from ebbtide.loadgen.runner import Outcome, percentile, run_open_loop
from ebbtide.sim import Platform, ServiceModel, Simulation, Workload, from_trace
from ebbtide.sim.calibration import (
    Calibration,
    ReplicaCounters,
    calibrate,
    cpu_ms_per_request,
    parse_replica_metrics,
)
from ebbtide.sim.engine import Trace
from ebbtide.sim.policies import Autoscaler
from ebbtide.sim.report import Score, score
from ebbtide.spec import validate_document

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "fixtures" / "inference_endpoint.yaml"
TRACE = ROOT.parent / "shared" / "traces" / "AzureLLMInferenceTrace_conv.csv"
NAME = "my-model-endpoint"
NAMESPACE = "default"
JSON = {"content-type": "application/json"}
OBJECTIVE = 0.1
"""Seconds: what requests are scored against, unless --objective sets the endpoint's own."""


@dataclass
class Live:
    """What the live replay recorded."""

    outcomes: list[Outcome]
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds from the start, replicas, ready replicas) every 0.5 s."""
    actions: int = 0
    elapsed: float = 0.0
    objective: list[tuple[float, str, str]] = field(default_factory=list)
    """(seconds from the start, reason, message) of the ObjectiveMet condition, each time its
    reason changed or it began or stopped saying that more replicas have not lowered the
    latency: what the endpoint said about the objective as it went."""


# -- control plane ----------------------------------------------------------------------------


class ControlPlane:
    """A control plane on a temporary home serving the seed endpoint; stopped on exit."""

    def __init__(self, repository: Path, document: dict[str, Any] | None = None) -> None:
        self.repository = repository
        self.document = document if document is not None else seed_document()
        self.directory = tempfile.TemporaryDirectory(prefix="ebbtide-replay-")
        self.home = Path(self.directory.name)

    def __enter__(self) -> ControlPlaneClient:
        options = ["--gateway-port", "0", "--profile", "local", "--repository"]
        lifecycle.start_detached(self.home, [*options, str(self.repository)])
        self.client = ControlPlaneClient(self.home)
        self.client.apply([self.document])
        while _status(self.client).get("readyReplicas", 0) < 1:
            SYSTEM_CLOCK.blocking_sleep(0.05)
        return self.client

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()
        lifecycle.stop(self.home)
        self.directory.cleanup()


def seed_document(objective_ms: float | None = None) -> dict[str, Any]:
    """The seed endpoint, with a p99 latency objective of `objective_ms` when given."""
    document: dict[str, Any] = yaml.safe_load(SEED.read_text())
    if objective_ms is not None:
        objective = {"percentile": 99, "latencyMilliseconds": objective_ms}
        document["spec"]["autoscaling"]["objective"] = objective
    return document


def _status(client: ControlPlaneClient) -> dict[str, Any]:
    return client.get_endpoint(NAMESPACE, NAME).get("status") or {}


def _request(client: ControlPlaneClient) -> tuple[str, bytes]:
    model_url = _status(client)["url"] + "/v2/models/my-ml-model"
    metadata = httpx.get(model_url, timeout=10).json()
    return model_url + "/infer", json.dumps(example_request(metadata, random.Random(0))).encode()


# -- calibration ------------------------------------------------------------------------------


def _scrape(client: ControlPlaneClient) -> dict[str, ReplicaCounters]:
    counters = {}
    for pod in client.list_pods(NAMESPACE, f"app={NAME}"):
        address = pod["status"].get("address")
        if address and pod["status"].get("ready"):
            text = httpx.get(f"http://{address}/metrics", timeout=10).text
            counters[pod["metadata"]["name"]] = parse_replica_metrics(text)
    return counters


def _ready_pods(client: ControlPlaneClient) -> set[str]:
    return {
        p["metadata"]["name"]
        for p in client.list_pods(NAMESPACE, f"app={NAME}")
        if p["status"].get("ready")
    }


def measure_start(client: ControlPlaneClient) -> float:
    """Seconds from a scale request to one more replica until the new one is first seen ready."""
    known = _ready_pods(client)
    asked = SYSTEM_CLOCK.now()
    client.scale(NAMESPACE, NAME, len(known) + 1)
    while not (_ready_pods(client) - known):
        if SYSTEM_CLOCK.now() - asked > 30:
            raise RuntimeError("no new replica became ready within 30 s of a scale-up")
        SYSTEM_CLOCK.blocking_sleep(0.01)
    return SYSTEM_CLOCK.now() - asked


def measure_cpu(client: ControlPlaneClient, rate: float, seconds: float) -> tuple[float, int]:
    """Replica CPU ms per request under a constant open-loop load; and the requests served."""
    url, body = _request(client)
    before = _scrape(client)
    arrivals = [index / rate for index in range(int(rate * seconds))]
    asyncio.run(_send(url, body, arrivals))
    after = _scrape(client)
    served = sum(
        c.requests - before.get(n, ReplicaCounters(0, 0)).requests for n, c in after.items()
    )
    return cpu_ms_per_request(before, after), served


def run_calibration(repository: Path) -> Calibration:
    with ControlPlane(repository) as client:
        SYSTEM_CLOCK.blocking_sleep(2.0)  # let the first replica settle before measuring
        cpu_ms, served = measure_cpu(client, rate=20.0, seconds=15.0)
        starts = [measure_start(client) for _ in range(3)]
    return calibrate(cpu_ms, served, starts)


# -- live replay ------------------------------------------------------------------------------


async def _send(url: str, body: bytes, arrivals: list[float]) -> list[Outcome]:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def send() -> int:
            return (await http.post(url, content=body, headers=JSON)).status_code

        return await run_open_loop(send, arrivals, SYSTEM_CLOCK)


def run_live(repository: Path, arrivals: list[float], document: dict[str, Any]) -> Live:
    with ControlPlane(repository, document) as client:
        SYSTEM_CLOCK.blocking_sleep(2.0)
        url, body = _request(client)
        rescales_before = _rescales(client)
        live = Live(outcomes=[])

        async def replay() -> None:
            start = SYSTEM_CLOCK.now()

            async def watch() -> None:
                while True:
                    status = await asyncio.to_thread(_status, client)
                    live.samples.append(
                        (
                            SYSTEM_CLOCK.now() - start,
                            int(status.get("replicas", 0)),
                            int(status.get("readyReplicas", 0)),
                        )
                    )
                    _note_objective(live, SYSTEM_CLOCK.now() - start, status)
                    await asyncio.sleep(0.5)

            watcher = asyncio.create_task(watch())
            live.outcomes = await _send(url, body, arrivals)
            live.elapsed = SYSTEM_CLOCK.now() - start
            watcher.cancel()

        asyncio.run(replay())
        live.actions = _rescales(client) - rescales_before
    return live


def _note_objective(live: Live, at: float, status: dict[str, Any]) -> None:
    for condition in status.get("conditions") or ():
        if condition.get("type") != "ObjectiveMet":
            continue
        reason, message = str(condition.get("reason")), str(condition.get("message"))
        if not live.objective or _kind(live.objective[-1][1:]) != _kind((reason, message)):
            live.objective.append((at, reason, message))


def _kind(said: tuple[str, str]) -> tuple[str, bool]:
    """A condition's reason, and whether it says more replicas have not lowered the latency."""
    return said[0], NOT_LOWERED in said[1]


def _rescales(client: ControlPlaneClient) -> int:
    events = client.events(NAMESPACE, NAME)
    # Repeated messages are one event with a count, as on Kubernetes.
    return sum(int(e.get("count", 1)) for e in events if e.get("reason") == "SuccessfulRescale")


def live_score(live: Live, objective: float = OBJECTIVE) -> Score:
    latencies = [o.latency if o.ok else float("inf") for o in live.outcomes]
    ordered = sorted(latencies)
    seconds = 0.0
    for (at, replicas, _), (after, _, _) in zip(live.samples, live.samples[1:], strict=False):
        seconds += replicas * (after - at)
    return Score(
        policy="live",
        requests=len(latencies),
        over_objective=sum(1 for x in latencies if x > objective),
        dropped=sum(1 for o in live.outcomes if not o.ok),
        timed_out=0,
        p50=percentile(ordered, 0.5),
        p99=percentile(ordered, 0.99),
        replica_seconds=seconds,
        actions=live.actions,
        peak_replicas=max((r for _, r, _ in live.samples), default=0),
    )


# -- report -----------------------------------------------------------------------------------


def print_table(live: Score, simulated: Score, objective: float = OBJECTIVE) -> None:
    rows = [
        ("requests", f"{live.requests}", f"{simulated.requests}", ""),
        (
            f"over {objective * 1000:g} ms",
            f"{live.over_objective_percent:.2f}%",
            f"{simulated.over_objective_percent:.2f}%",
            f"{live.over_objective_percent - simulated.over_objective_percent:+.2f} pt",
        ),
        ("failed", f"{live.dropped}", f"{simulated.dropped + simulated.timed_out}", ""),
        _ms_row("p50 ms", live.p50, simulated.p50),
        _ms_row("p99 ms", live.p99, simulated.p99),
        (
            "replica-seconds",
            f"{live.replica_seconds:.0f}",
            f"{simulated.replica_seconds:.0f}",
            _ratio(live.replica_seconds, simulated.replica_seconds),
        ),
        ("scaling actions", f"{live.actions}", f"{simulated.actions}", ""),
        ("peak replicas", f"{live.peak_replicas}", f"{simulated.peak_replicas}", ""),
    ]
    print(f"| {'':<16}| {'live':>9} | {'simulated':>9} | {'gap':>9} |")
    print(f"|{'-' * 17}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for name, a, b, gap in rows:
        print(f"| {name:<16}| {a:>9} | {b:>9} | {gap:>9} |")


def _ms_row(name: str, live: float, simulated: float) -> tuple[str, str, str, str]:
    return name, f"{live * 1000:.1f}", f"{simulated * 1000:.1f}", _ratio(live, simulated)


def _ratio(live: float, simulated: float) -> str:
    return f"{live / simulated:.2f}x" if simulated else "-"


def _p99_per_second(pairs: list[tuple[float, float]], seconds: int) -> list[float]:
    """The p99 latency of the requests due in each second (NaN for a second without any)."""
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for at, latency in pairs:
        buckets[min(int(at), seconds - 1)].append(latency)
    return [percentile(sorted(b), 0.99) if b else float("nan") for b in buckets]


def plot(
    path: Path,
    live: Live,
    trace: Trace,
    arrivals: list[float],
    duration: float,
    objective: float = OBJECTIVE,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    seconds = int(duration) + 1
    per_second = [0] * seconds
    for at in arrivals:
        per_second[min(int(at), len(per_second) - 1)] += 1
    top.fill_between(range(len(per_second)), per_second, step="post", color="0.8")
    top.set_ylabel("arrivals/s")
    times = [at for at, _ in trace.replica_changes] + [trace.end]
    counts = [count for _, count in trace.replica_changes]
    middle.step(times, [*counts, counts[-1]], where="post", label="simulated (replicas)")
    middle.step(
        [at for at, _, _ in live.samples],
        [ready for _, _, ready in live.samples],
        where="post",
        label="live (ready replicas)",
    )
    middle.step(
        [at for at, _, _ in live.samples],
        [count for _, count, _ in live.samples],
        where="post",
        linestyle=":",
        label="live (replicas)",
    )
    middle.set_ylabel("replicas")
    middle.legend(loc="upper left")
    simulated = [
        (at, latency if isinstance(latency, float) else float("inf"))
        for at, latency in zip(arrivals, trace.latencies, strict=True)
    ]
    measured = [(o.due, o.latency if o.ok else float("inf")) for o in live.outcomes]
    for pairs, label in ((simulated, "simulated"), (measured, "live")):
        bottom.step(
            range(seconds),
            [x * 1000 for x in _p99_per_second(pairs, seconds)],
            where="post",
            label=f"{label} p99",
        )
    bottom.axhline(objective * 1000, color="red", linestyle=":", label="objective")
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 per second (ms)")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def simulate(
    workload: Workload,
    start_time: float,
    seed: int,
    document: dict[str, Any],
    objective: float = OBJECTIVE,
) -> tuple[Trace, Score]:
    """ebbtide's policy for the endpoint served live, from one replica, on the same arrivals."""
    endpoint = validate_document(document, str(SEED)).endpoint
    platform = Platform(start_time=start_time, discipline="fifo", objective=objective)
    policy = Autoscaler("ebbtide", policy_for(endpoint, LOCAL))
    trace = Simulation(workload, policy, platform, 1, seed).run()
    return trace, score("ebbtide", trace, platform)


def main() -> None:
    lifecycle.exit_on_sigterm()
    parser = argparse.ArgumentParser()
    parser.add_argument("--trace", type=Path, default=TRACE)
    parser.add_argument("--speedup", type=float, default=10.0)
    parser.add_argument("--rate-scale", type=float, default=1.5)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--calibrate-only", action="store_true")
    parser.add_argument(
        "--objective",
        type=float,
        default=None,
        metavar="MS",
        help="set spec.autoscaling.objective to this p99 in milliseconds, live and simulated",
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ebbtide-replay-models-") as models:
        subprocess.run(
            [sys.executable, "-m", "ebbtide", "model", "sample", "heavy", "--as", "my-ml-model:v1",
             "--repository", models],
            check=True, capture_output=True,
        )  # fmt: skip
        calibration = run_calibration(Path(models))
        starts = ", ".join(f"{s:.2f}" for s in calibration.starts)
        print(
            f"calibrated: {calibration.cpu_ms:.2f} ms CPU per request over "
            f"{calibration.requests} requests; start {calibration.start_time:.2f} s "
            f"(median of {starts})"
        )
        print(f"simulate with: {calibration.options()}")
        if arguments.calibrate_only:
            return
        workload = from_trace(
            arguments.trace,
            ServiceModel(mean=calibration.cpu_ms / 1000),
            arguments.seed,
            arguments.speedup,
            arguments.rate_scale,
            arguments.duration,
        )
        arrivals = list(workload.arrivals)
        document = seed_document(arguments.objective)
        objective = OBJECTIVE if arguments.objective is None else arguments.objective / 1000
        trace, simulated = simulate(
            workload, calibration.start_time, arguments.seed, document, objective
        )
        live = run_live(Path(models), arrivals, document)
    print(
        f"window: {arguments.trace.name}, first {arguments.duration:g} s at x{arguments.speedup:g}"
        f" time, x{arguments.rate_scale:g} rate: {len(arrivals)} requests "
        f"({workload.mean_rate:.1f}/s); live replay took {live.elapsed:.1f} s"
    )
    if arguments.objective is not None:
        print(f"spec.autoscaling.objective: p99 within {arguments.objective:g} ms")
    print_table(live_score(live, objective), simulated, objective)
    if live.objective:
        print("ObjectiveMet as it changed (live):")
        for at, reason, message in live.objective:
            print(f"  {at:6.1f} s  {reason}: {message}")
    if arguments.plot is not None:
        plot(arguments.plot, live, trace, arrivals, workload.duration, objective)
        print(f"plot: {arguments.plot}")


if __name__ == "__main__":
    main()
