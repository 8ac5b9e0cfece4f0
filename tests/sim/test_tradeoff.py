"""Trade-off curves: each knob reaches its policy, and the defaults are the comparison's rows."""

from __future__ import annotations

from pathlib import Path

from ebbtide.sim import Platform, ServiceModel, compare, synthetic
from ebbtide.sim.compare import sample_endpoint
from ebbtide.sim.tradeoff import KNOBS, plot_tradeoff, tradeoff, tradeoff_rows

PLATFORM = Platform(start_time=0.5)


def test_each_default_point_is_what_the_comparison_scores() -> None:
    workload = synthetic("spike", 40, 120, ServiceModel(), seed=0)
    curves = tradeoff(workload, PLATFORM, seed=0)
    side_by_side = compare(workload, sample_endpoint(), PLATFORM, seed=0)
    oracle = side_by_side.score_of("oracle")
    assert oracle is not None
    assert curves.oracle == oracle
    for policy in KNOBS:
        default = next(p for p in curves.points if p.policy == policy and p.is_default)
        scored = side_by_side.score_of(policy)
        assert scored is not None
        assert default.over_percent == scored.over_objective_percent
        assert default.cost == scored.replica_seconds / oracle.replica_seconds


def test_a_lower_cpu_target_costs_more_and_misses_less() -> None:
    workload = synthetic("spike", 40, 120, ServiceModel(), seed=0)
    curves = tradeoff(workload, PLATFORM, seed=0)
    ebbtide = {p.value: p for p in curves.points if p.policy == "ebbtide"}
    assert ebbtide[30].cost > ebbtide[90].cost
    assert ebbtide[30].over_percent <= ebbtide[90].over_percent
    kpa = [p.value for p in curves.points if p.policy == "knative-kpa"]
    assert max(kpa) <= PLATFORM.concurrency


def test_the_table_and_the_plot(tmp_path: Path) -> None:
    workload = synthetic("steps", 20, 90, ServiceModel(), seed=0)
    curves = tradeoff(workload, PLATFORM, seed=0)
    rows = tradeoff_rows(curves)
    assert rows[-1][0] == "oracle"
    assert sum(1 for row in rows if "(default)" in row[2]) == 4
    png = tmp_path / "curves.png"
    plot_tradeoff(png, curves)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
