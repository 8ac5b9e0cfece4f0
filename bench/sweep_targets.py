"""The default policy at other CPU targets over a sweep's grid: its standing against each rival
and its cost against the oracle's, one row per target.

    .venv/bin/python bench/sweep_targets.py --grid full --seeds 0 --targets 60,70,80,90 \
        --concurrency 2.8,2 --jobs 2

`ebbtide simulate --tradeoff` draws one workload's cost against its requests over the
objective at every setting of each policy's knob. This asks the grid's question instead: is
there a CPU target at which the default policy meets the sweep's targets, fewer requests over
the objective than each rival in 95% of cells at no more than 1.25x the oracle's replica-seconds
in 90%? The rivals keep their own defaults; each cell's oracle is calibrated once and reused
for every row, so every row is scored against the same oracle. `--concurrency` adds rows with
a concurrency target (requests in flight per replica) beside the default 80% CPU: the KPA's
2.8, Ray Serve's 2.
"""

from __future__ import annotations

import argparse
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

from ebbtide.autoscaler import LOCAL
from ebbtide.cli.output import table
from ebbtide.sim import sweep
from ebbtide.sim.compare import compare, sample_endpoint
from ebbtide.sim.platform import Platform
from ebbtide.spec.models import InferenceEndpoint

RIVALS = sweep.RIVALS


@dataclass(frozen=True)
class CellOutcome:
    """One cell: each rival's requests over the objective, and ebbtide's at each target with
    its replica-seconds against the oracle's."""

    rivals: dict[str, int]
    ebbtide: dict[str, tuple[int, float]]
    """By row label: requests over the objective, replica-seconds against the oracle's."""


def variants(
    targets: tuple[int, ...], concurrency: tuple[float, ...]
) -> dict[str, InferenceEndpoint]:
    """The sample endpoint at each CPU target, then at 80% CPU with each concurrency target."""
    rows = {f"{t}%": sample_endpoint(sweep.MAX_REPLICAS, t) for t in targets}
    for in_flight in concurrency:
        document = sample_endpoint(sweep.MAX_REPLICAS).manifest()
        document["spec"]["autoscaling"]["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            },
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "concurrency"},
                    "target": {"type": "AverageValue", "averageValue": in_flight},
                },
            },
        ]
        rows[f"80% + {in_flight:g} in flight"] = InferenceEndpoint.model_validate(document)
    return rows


def run_cell(
    job: tuple[sweep.Cell, sweep.Grid, Path, tuple[int, ...], tuple[float, ...]],
) -> CellOutcome:
    cell, grid, traces, targets, concurrency = job
    workload = sweep.build_workload(cell, grid, traces)
    platform = Platform(start_time=cell.start_time)
    base = compare(
        workload,
        sample_endpoint(sweep.MAX_REPLICAS),
        platform,
        cell.seed,
        (*RIVALS, "oracle"),
        profile=LOCAL,
    )
    oracle = base.score_of("oracle")
    assert oracle is not None
    rivals = {}
    for rival in RIVALS:
        score = base.score_of(rival)
        assert score is not None
        rivals[rival] = score.over_objective
    ours = {}
    for label, endpoint in variants(targets, concurrency).items():
        run = compare(
            workload,
            endpoint,
            platform,
            cell.seed,
            ("ebbtide",),
            oracle_utilization=base.oracle_utilization,
            profile=LOCAL,
        )
        score = run.score_of("ebbtide")
        assert score is not None
        ours[label] = (score.over_objective, score.replica_seconds / oracle.replica_seconds)
    return CellOutcome(rivals, ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="full", choices=sorted(sweep.GRIDS))
    parser.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1")
    parser.add_argument("--targets", default="60,70,80,90", help="CPU targets, percent")
    parser.add_argument("--concurrency", default="", help="concurrency targets beside 80%% CPU")
    parser.add_argument("--traces", type=Path, default=Path("../shared/traces"))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    grid = sweep.grid_from(args.grid, [int(s) for s in args.seeds.split(",")])
    targets = tuple(int(t) for t in args.targets.split(","))
    concurrency = tuple(float(c) for c in args.concurrency.split(",") if c)
    sweep.check_grid(grid, args.traces)
    jobs = [(cell, grid, args.traces, targets, concurrency) for cell in grid.cells()]
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            outcomes = pool.map(run_cell, jobs)
    else:
        outcomes = [run_cell(job) for job in jobs]
    cells = len(outcomes)

    def share(count: int) -> str:
        return f"{count}/{cells} ({count / cells:.0%})"

    rows = []
    for label in variants(targets, concurrency):
        fewer = [
            sum(1 for o in outcomes if o.ebbtide[label][0] < o.rivals[rival]) for rival in RIVALS
        ]
        more = [
            sum(1 for o in outcomes if o.ebbtide[label][0] > o.rivals[rival]) for rival in RIVALS
        ]
        within = sum(1 for o in outcomes if o.ebbtide[label][1] <= sweep.COST_LIMIT)
        rows.append(
            [
                label,
                *(share(n) for n in fewer),
                *(share(cells - n) for n in more),
                share(within),
            ]
        )
    possible = [sum(1 for o in outcomes if o.rivals[rival] > 0) for rival in RIVALS]
    print(f"{cells} cells ({args.grid} grid, seeds {args.seeds}); rivals at their defaults")
    headers = (
        "TARGETS",
        *(f"FEWER-THAN-{r.split('-')[0].upper()}" for r in RIVALS),
        *(f"NOT-MORE-THAN-{r.split('-')[0].upper()}" for r in RIVALS),
        f"WITHIN-{sweep.COST_LIMIT:g}X",
    )
    print(table(headers, rows))
    print(
        "fewer is possible at all (the rival has a request over the objective) in "
        + ", ".join(f"{share(n)} against {r}" for r, n in zip(RIVALS, possible, strict=True))
    )


if __name__ == "__main__":
    main()
