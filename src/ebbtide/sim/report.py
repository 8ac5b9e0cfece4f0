"""Scores per policy, the side-by-side table, and the plot (matplotlib, the `plot` extra)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ebbtide.core.errors import EbbtideError
from ebbtide.sim.engine import DROPPED, TIMED_OUT, Trace
from ebbtide.sim.platform import Platform
from ebbtide.sim.workload import Workload

TABLE_HEADERS = (
    "POLICY",
    "OVER-OBJECTIVE",
    "DROPPED",
    "TIMED-OUT",
    "P50",
    "P99",
    "REPLICA-SECONDS",
    "VS-ORACLE",
    "ACTIONS",
    "PEAK",
)


@dataclass(frozen=True)
class Score:
    """How one policy did: the numbers in the table."""

    policy: str
    requests: int
    over_objective: int
    """Requests answered later than the objective, refused, or given up on."""
    dropped: int
    timed_out: int
    p50: float
    p99: float
    replica_seconds: float
    actions: int
    peak_replicas: int

    @property
    def over_objective_percent(self) -> float:
        return 100.0 * self.over_objective / self.requests if self.requests else 0.0


def score(policy: str, trace: Trace, platform: Platform) -> Score:
    latencies = trace.latencies
    dropped = sum(1 for x in latencies if x == DROPPED)
    timed_out = sum(1 for x in latencies if x == TIMED_OUT)
    over = sum(1 for x in latencies if x > platform.objective or x == DROPPED)
    ordered = sorted(math.inf if x == DROPPED else x for x in latencies)
    return Score(
        policy=policy,
        requests=len(latencies),
        over_objective=over,
        dropped=dropped,
        timed_out=timed_out,
        p50=_percentile(ordered, 0.50),
        p99=_percentile(ordered, 0.99),
        replica_seconds=trace.replica_seconds,
        actions=trace.actions,
        peak_replicas=max((count for _, count in trace.replica_changes), default=0),
    )


def table_rows(scores: Sequence[Score], oracle_cost: float | None) -> list[list[str]]:
    rows = []
    for s in scores:
        ratio = f"{s.replica_seconds / oracle_cost:.2f}x" if oracle_cost else "-"
        rows.append(
            [
                s.policy,
                f"{s.over_objective_percent:.2f}%",
                str(s.dropped),
                str(s.timed_out),
                _ms(s.p50),
                _ms(s.p99),
                f"{s.replica_seconds:.0f}",
                ratio,
                str(s.actions),
                str(s.peak_replicas),
            ]
        )
    return rows


def series(trace: Trace, workload: Workload) -> tuple[list[int], list[int], list[float]]:
    """Per second: arrivals, replicas that cost (at the end of the second), p99 latency in
    seconds of the requests arriving in it (refused and abandoned ones count as the timeout)."""
    seconds = max(1, math.ceil(trace.end))
    arrivals = [0] * seconds
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for at, latency in zip(workload.arrivals, trace.latencies, strict=True):
        second = min(int(at), seconds - 1)
        arrivals[second] += 1
        buckets[second].append(latency)
    replicas, index, count = [], 0, 0
    changes = trace.replica_changes
    for second in range(seconds):
        while index < len(changes) and changes[index][0] <= second + 1:
            count = changes[index][1]
            index += 1
        replicas.append(count)
    p99 = [
        _percentile(sorted(math.inf if x == DROPPED else x for x in bucket), 0.99)
        for bucket in buckets
    ]
    return arrivals, replicas, p99


def plot(
    path: Path,
    workload: Workload,
    results: Sequence[tuple[Score, Trace]],
    platform: Platform,
) -> None:
    """One panel per policy: arrivals per second, replicas, and p99 latency against the
    objective."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EbbtideError(
            "the plot needs matplotlib: pip install 'ebbtide[plot]' (or pass --no-plot)"
        ) from None
    figure, axes = plt.subplots(
        len(results), 1, figsize=(11, 2.3 * len(results)), sharex=True, squeeze=False
    )
    cap = platform.timeout
    peak = max((s.peak_replicas for s, _ in results), default=1) or 1
    for row, (result, trace) in zip(axes, results, strict=True):
        axis = row[0]
        arrivals, replicas, p99 = series(trace, workload)
        seconds = list(range(len(arrivals)))
        axis.fill_between(seconds, arrivals, step="post", color="0.85", label="arrivals/s")
        axis.set_ylabel("arrivals/s")
        count_axis = axis.twinx()
        count_axis.step(seconds, replicas, where="post", color="tab:blue", label="replicas")
        count_axis.set_ylabel("replicas", color="tab:blue")
        count_axis.set_ylim(0, peak * 1.15)
        latency_axis = axis.twinx()
        latency_axis.spines["right"].set_position(("axes", 1.08))
        shown = [min(x, cap) * 1000 if not math.isnan(x) else math.nan for x in p99]
        latency_axis.plot(seconds, shown, color="tab:red", linewidth=0.8, label="p99")
        latency_axis.axhline(
            platform.objective * 1000, color="tab:red", linestyle=":", linewidth=0.8
        )
        latency_axis.set_yscale("log")
        latency_axis.set_ylim(1, cap * 1000 * 1.5)  # the same scale in every panel
        latency_axis.set_ylabel("p99 ms", color="tab:red")
        axis.set_title(
            f"{result.policy}: {result.over_objective_percent:.2f}% over "
            f"{platform.objective * 1000:.0f} ms, {result.replica_seconds:.0f} replica-seconds",
            fontsize=9,
            loc="left",
        )
    axes[-1][0].set_xlabel(f"seconds ({workload.name})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "timeout"
    return f"{seconds * 1000:.0f}ms"
