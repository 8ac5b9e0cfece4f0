"""Each policy's main knob swept on one workload: cost against requests over the objective.

At one setting a policy is a point; its knob traces a curve from cheap and late to costly and
on time. Comparing curves compares policies at equal cost, and a curve is what a user picks a
setting from. The knobs: the CPU target (ebbtide and the HPA, `targetCPUUtilizationPercentage`),
the KPA's target concurrency per replica, Ray Serve's `target_ongoing_requests`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ebbtide.autoscaler import KUBERNETES, LOCAL, policy_for
from ebbtide.sim.compare import calibrated_oracle, sample_endpoint
from ebbtide.sim.engine import Simulation
from ebbtide.sim.platform import Platform
from ebbtide.sim.policies import Autoscaler, Knative, RayServe
from ebbtide.sim.report import Score, score
from ebbtide.sim.view import ScalingPolicy
from ebbtide.sim.workload import Workload

CPU_TARGETS = (30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
KNOBS: dict[str, tuple[str, tuple[float, ...]]] = {
    "ebbtide": ("CPU target %", CPU_TARGETS),
    "hpa": ("CPU target %", CPU_TARGETS),
    "knative-kpa": ("target concurrency", (0.5, 1.0, 1.5, 2.0, 2.8, 3.5, 4.0)),
    "ray-serve": ("target_ongoing_requests", (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)),
}
"""Per policy: its knob, and the values tried (each policy's default among them)."""
DEFAULTS = {"ebbtide": 80.0, "hpa": 80.0, "knative-kpa": 2.8, "ray-serve": 2.0}


@dataclass(frozen=True)
class Point:
    policy: str
    knob: str
    value: float
    over_percent: float
    cost: float
    """Replica-seconds against the oracle's."""

    @property
    def is_default(self) -> bool:
        return DEFAULTS[self.policy] == self.value


@dataclass(frozen=True)
class Tradeoff:
    workload: Workload
    platform: Platform
    oracle: Score
    points: tuple[Point, ...]


def knob_policy(
    policy: str, value: float, platform: Platform, low: int, high: int
) -> ScalingPolicy:
    if policy in ("ebbtide", "hpa"):
        endpoint = sample_endpoint(high, cpu_target=round(value))
        return Autoscaler(
            policy, policy_for(endpoint, LOCAL if policy == "ebbtide" else KUBERNETES)
        )
    if policy == "knative-kpa":
        return Knative(
            platform.concurrency, low, high, target_utilization=value / platform.concurrency
        )
    return RayServe(low, high, target_ongoing_requests=value)


def tradeoff(
    workload: Workload, platform: Platform, seed: int = 0, max_replicas: int = 40
) -> Tradeoff:
    """Every knob value of every policy on the workload, each against the calibrated oracle."""
    low, high = 1, max_replicas
    oracle, oracle_trace = calibrated_oracle(workload, platform, seed, low, high, None)
    oracle_score = score("oracle", oracle_trace, platform)
    points = []
    for policy, (knob, values) in KNOBS.items():
        for value in values:
            if policy == "knative-kpa" and value > platform.concurrency:
                continue  # a target above what a replica may hold is never reached
            runner = knob_policy(policy, value, platform, low, high)
            trace = Simulation(workload, runner, platform, oracle.initial, seed).run()
            result = score(policy, trace, platform)
            points.append(
                Point(
                    policy,
                    knob,
                    value,
                    result.over_objective_percent,
                    result.replica_seconds / oracle_score.replica_seconds,
                )
            )
    return Tradeoff(workload, platform, oracle_score, tuple(points))


TRADEOFF_HEADERS = ("POLICY", "KNOB", "VALUE", "OVER-OBJECTIVE", "VS-ORACLE")


def tradeoff_rows(result: Tradeoff) -> list[list[str]]:
    rows = [
        [
            p.policy,
            p.knob,
            f"{p.value:g}" + (" (default)" if p.is_default else ""),
            f"{p.over_percent:.2f}%",
            f"{p.cost:.2f}x",
        ]
        for p in result.points
    ]
    rows.append(["oracle", "-", "-", f"{result.oracle.over_objective_percent:.2f}%", "1.00x"])
    return rows


def plot_tradeoff(path: Path, result: Tradeoff) -> None:
    """Cost against requests over the objective, one curve per policy, defaults circled."""
    from ebbtide.sim.sweep import pyplot

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 5.5))
    for policy in KNOBS:
        points = sorted((p for p in result.points if p.policy == policy), key=lambda p: p.value)
        if not points:
            continue
        line = axis.plot(
            [max(p.over_percent, 0.01) for p in points],
            [p.cost for p in points],
            marker="o",
            markersize=3,
            label=f"{policy} ({points[0].knob})",
        )[0]
        for p in points:
            axis.annotate(f"{p.value:g}", (max(p.over_percent, 0.01), p.cost), fontsize=6)
            if p.is_default:
                axis.plot(
                    max(p.over_percent, 0.01),
                    p.cost,
                    marker="o",
                    markersize=9,
                    fillstyle="none",
                    color=line.get_color(),
                )
    axis.plot(
        max(result.oracle.over_objective_percent, 0.01), 1.0, marker="*", color="k", label="oracle"
    )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel(
        f"requests over the {result.platform.objective * 1000:g} ms objective, % (log; 0 shown "
        "at 0.01)"
    )
    axis.set_ylabel("replica-seconds / oracle (log)")
    axis.set_title(f"{result.workload.name}: each policy's knob (defaults circled)", fontsize=9)
    axis.grid(True, which="both", linewidth=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
