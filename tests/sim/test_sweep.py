"""The sweep: every policy over a grid, deterministic, scored per cell and in total."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebbtide.core.errors import EbbtideError
from ebbtide.sim import sweep
from ebbtide.sim.compare import POLICIES

SMALL = sweep.GRIDS["small"]


@pytest.fixture(scope="module")
def swept(traces: Path) -> sweep.Sweep:
    return sweep.run(SMALL, traces)


def test_the_small_grid_runs_every_policy_on_every_cell_and_repeats_itself(
    swept: sweep.Sweep,
) -> None:
    first = swept
    assert len(first.results) == len(SMALL.cells()) == 16
    assert {r.cell.workload for r in first.results} == {"conv", "code", "spike", "diurnal"}
    for result in first.results:
        assert [s.policy for s in result.scores][:4] == list(POLICIES[:4])
        assert [s.policy for s in result.scores][-2:] == ["oracle", "reactive-oracle"]
        assert result.cost("oracle") == 1.0
        # Without foresight it cannot miss less than the oracle unless it pays more.
        better = result.over("reactive-oracle") < result.over("oracle")
        assert not better or result.cost("reactive-oracle") > 1.0, result.cell.label
        assert len({s.requests for s in result.scores}) == 1


def test_two_processes_give_the_same_sweep_as_one(traces: Path, swept: sweep.Sweep) -> None:
    assert sweep.run(SMALL, traces, jobs=2) == swept


def test_standings_and_totals_add_up(swept: sweep.Sweep) -> None:
    result = swept
    for rival in sweep.RIVALS:
        standing = result.standing(rival)
        assert standing.cells == len(result.results)
        losses = [
            r for r in result.results
            if r.score("ebbtide").over_objective > r.score(rival).over_objective
        ]  # fmt: skip
        assert standing.losses == len(losses)
        if losses:
            assert standing.worst in losses
        # A cell where the rival had none over is one no policy can have fewer in.
        spotless = [r for r in result.results if r.score(rival).over_objective == 0]
        assert standing.beatable == len(result.results) - len(spotless)
        assert standing.wins <= standing.beatable
        assert standing.not_more == standing.wins + standing.ties
    assert result.total_cost("oracle") == 1.0
    fixed = result.total_over_percent("fixed")
    assert fixed <= result.total_over_percent("hpa")
    within = sum(1 for r in result.results if r.cost("ebbtide") <= 1.25)
    assert result.within_cost("ebbtide") == within
    standing_rows = sweep.standing_rows(result)
    assert [len(row) for row in standing_rows] == [len(sweep.STANDING_HEADERS)] * 3
    rows = sweep.total_rows(result)
    assert [row[0] for row in rows] == list(POLICIES)
    records = sweep.cell_records(result)
    assert list(records[0]) == sweep.record_fields()
    standing = result.objective_standing()
    reachable = [
        r for r in result.results
        if r.oracle_meets and r.over("reactive-oracle") <= 1.0 and r.cost("reactive-oracle") <= 1.5
    ]  # fmt: skip
    assert standing.reachable == len(reachable)
    assert standing.reachable_met_within_cost <= min(standing.reachable, standing.met_within_cost)
    assert "without foresight: the reactive-oracle meets it" in standing.line()


def test_the_heat_map_is_a_png(swept: sweep.Sweep, tmp_path: Path) -> None:
    png = tmp_path / "heat.png"
    sweep.heatmap(png, swept)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_trace_directory_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EbbtideError, match="not found; pass --traces DIR"):
        sweep.run(SMALL, tmp_path / "nowhere")


def test_the_full_grid_spans_what_it_promises() -> None:
    full = sweep.GRIDS["full"]
    assert set(full.workloads) == {"conv", "code", "steps", "spike", "ramp", "diurnal"}
    assert min(full.speedups) == 5
    assert max(full.speedups) == 40
    assert min(full.cpu_ms) == 3
    assert max(full.cpu_ms) == 30
    assert min(full.start_times) == 0.06
    assert max(full.start_times) == 10
    assert len(full.seeds) >= 2


def test_the_breakdown_counts_each_value_of_a_dimension(swept: sweep.Sweep) -> None:
    records = sweep.cell_records(swept)
    rows = sweep.breakdown_rows(records, "start_time")
    assert [row[0] for row in rows] == ["0.06", "2"]
    assert [row[1] for row in rows] == ["8", "8"]
    slow = [r for r in swept.results if r.cell.start_time == 2.0]
    fewer = sum(1 for r in slow if r.over("ebbtide") < r.over("hpa"))
    assert rows[1][2].startswith(f"{fewer}/8 ")
