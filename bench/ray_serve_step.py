"""The simulator's Ray Serve model against a live Ray Serve, on the same step load.

One workload is drawn once (Poisson arrivals at a base rate, a step up, a step back down, and
lognormal CPU per request, seeded) and given to both: a live Ray Serve deployment with the same
autoscaling settings (`bench/servers/ray_step.py`, run by an interpreter that has `ray[serve]`,
installed only for this benchmark), and the simulator's `ray-serve` policy
(`ebbtide.sim.policies.RayServe`) on the same arrivals, with the platform taken from the live
run: one replica serves `max_ongoing_requests` at once, sharing its core among them (processor
sharing, as the threads of a Ray Serve replica running a plain `def` handler do), and starts in
the seconds the live replicas took. Printed side by side: seconds from the step to the first
added replica, the peak, replica-seconds, the replica count every 10 s, and the live replica's
median latency at the base rate against the CPU per request (on a busy machine a live replica
serves slower than the simulator assumes, and a comparison of the autoscalers means little).

    python3 -m venv /tmp/ray-bench && /tmp/ray-bench/bin/pip install "ray[serve]" httpx
    .venv/bin/python bench/ray_serve_step.py --ray-python /tmp/ray-bench/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ebbtide.sim.engine import Simulation
from ebbtide.sim.platform import Platform
from ebbtide.sim.policies import RayServe
from ebbtide.sim.workload import ServiceModel, parse_steps, synthetic

LIVE = Path(__file__).resolve().parent / "servers" / "ray_step.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", required=True, help="an interpreter with ray[serve]")
    parser.add_argument("--steps", default="6:30,20:120,6:90", help="RATE:SECONDS,...")
    parser.add_argument("--cpu-ms", type=float, default=40.0)
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--downscale-delay", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="save both series here")
    args = parser.parse_args()

    steps = parse_steps(args.steps)
    duration = sum(seconds for _, seconds in steps)
    workload = synthetic(
        "steps", steps[0][0], duration, ServiceModel(args.cpu_ms / 1000), args.seed,
        steps=args.steps,
    )  # fmt: skip
    settings = {
        "min_replicas": 1,
        "max_replicas": args.max_replicas,
        "max_ongoing_requests": 4,
        "target_ongoing_requests": 2.0,
        "upscale_delay_s": 30.0,
        "downscale_delay_s": args.downscale_delay,
        "look_back_period_s": 30.0,
    }
    with tempfile.TemporaryDirectory(prefix="ebbtide-ray-") as directory:
        plan_path, result_path = Path(directory) / "plan.json", Path(directory) / "result.json"
        plan = {"arrivals": workload.arrivals, "cpu": workload.cpu_seconds, "settings": settings}
        plan_path.write_text(json.dumps(plan))
        subprocess.run([args.ray_python, str(LIVE), str(plan_path), str(result_path)], check=True)
        live = json.loads(result_path.read_text())

    start_time = live_start_time(live["replicas"])
    platform = Platform(start_time=start_time, concurrency=4, discipline="ps")
    policy = RayServe(
        1,
        args.max_replicas,
        target_ongoing_requests=2.0,
        upscale_delay=30.0,
        downscale_delay=args.downscale_delay,
        look_back=30.0,
    )
    trace = Simulation(workload, policy, platform, 1, args.seed).run()
    simulated = [(at, count) for at, count in trace.replica_changes]
    live_series = [(at, total) for at, total, _ in live["replicas"]]
    step_at = steps[0][1]
    report(live, live_series, simulated, step_at, duration, start_time)
    if args.json:
        args.json.write_text(json.dumps({"live": live, "simulated": simulated}))
    return 0


def live_start_time(series: list[list[float]]) -> float:
    """The median seconds a live replica spent between being asked for and running."""
    waits, asked = [], []
    previous_total, previous_running = 1, 1
    for at, total, running in series:
        asked += [at] * max(0, int(total) - previous_total)
        for _ in range(max(0, int(running) - previous_running)):
            if asked:
                waits.append(at - asked.pop(0))
        previous_total, previous_running = int(total), int(running)
    waits.sort()
    return waits[len(waits) // 2] if waits else 1.0


def count_at(series: list[tuple[float, int]], at: float) -> int:
    count = series[0][1] if series else 0
    for when, value in series:
        if when > at:
            break
        count = value
    return count


def first_above(series: list[tuple[float, int]], after: float, level: int) -> float | None:
    return next((when - after for when, value in series if when >= after and value > level), None)


def replica_seconds(series: list[tuple[float, int]], end: float) -> float:
    total = 0.0
    for (when, value), (following, _) in zip(series, [*series[1:], (end, 0)], strict=True):
        total += value * (max(when, min(following, end)) - when)
    return total


def report(
    live: dict[str, Any],
    live_series: list[tuple[float, int]],
    simulated: list[tuple[float, int]],
    step_at: float,
    duration: float,
    start_time: float,
) -> None:
    failed = sum(1 for _, code, _ in live["requests"] if code != 200)
    print(
        f"live requests: {len(live['requests'])}, failed {failed}; replica start {start_time:.2f} s"
    )
    base = sorted(latency for at, code, latency in live["requests"] if at < step_at and code == 200)
    if base:
        print(f"live median latency at the base rate: {base[len(base) // 2] * 1000:.0f} ms")
    rows = [
        ("first added replica after the step, s", first_above(live_series, step_at, 1),
         first_above(simulated, step_at, 1)),
        ("peak replicas", max(v for _, v in live_series), max(v for _, v in simulated)),
        ("replica-seconds", replica_seconds(live_series, duration),
         replica_seconds(simulated, duration)),
    ]  # fmt: skip
    print("| figure | live Ray Serve | simulated | gap |")
    print("| --- | ---: | ---: | ---: |")
    for name, real, model in rows:
        gap = f"{model - real:+.1f}" if real is not None and model is not None else "-"
        print(f"| {name} | {_text(real)} | {_text(model)} | {gap} |")
    print("\nreplicas every 10 s (live / simulated):")
    marks = range(0, int(duration) + 1, 10)
    print(" ".join(f"{t:>4}" for t in marks))
    print(" ".join(f"{count_at(live_series, t):>4}" for t in marks))
    print(" ".join(f"{count_at(simulated, t):>4}" for t in marks))


def _text(value: float | None) -> str:
    if value is None:
        return "never"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
