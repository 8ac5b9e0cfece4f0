"""Every policy over a grid of workloads and platforms, scored cell by cell and in total.

A cell is one workload (a trace or a synthetic shape, compressed in time and scaled in rate),
one mean CPU per request, one replica start time and one seed; `compare` runs every policy on
it. A synthetic shape stands for an hour of traffic at `Grid.synthetic_rate` requests/s (before
compression) compressed like a trace: `speedup` times shorter and faster. The sweep answers, per
rival, in how many cells ebbtide had fewer requests over the objective, and in how many its
replica-seconds stayed within `COST_LIMIT` of the oracle's.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ebbtide.autoscaler import LOCAL
from ebbtide.core.errors import EbbtideError
from ebbtide.sim.compare import MEETS_OBJECTIVE_PERCENT, POLICIES, compare, sample_endpoint
from ebbtide.sim.platform import Platform
from ebbtide.sim.report import Score
from ebbtide.sim.workload import SHAPES, ServiceModel, Workload, from_trace, synthetic

TRACES = ("conv", "code")
"""The Azure LLM inference traces, by the suffix of their file name."""
RIVALS = ("hpa", "knative-kpa", "ray-serve")
COST_LIMIT = 1.25
"""The replica-seconds against the oracle's a cell may cost ebbtide and still count as met."""
OBJECTIVE_POLICY = "ebbtide-objective"
REACTIVE = "reactive-oracle"
OBJECTIVE_COST_LIMIT = 1.5
"""With the latency objective in the spec: the cost a cell may have and still count as met."""
MAX_REPLICAS = 40


def trace_file(traces: Path, name: str) -> Path:
    return traces / f"AzureLLMInferenceTrace_{name}.csv"


@dataclass(frozen=True)
class Grid:
    """The values each dimension takes; the cells are every combination."""

    workloads: tuple[str, ...]
    speedups: tuple[float, ...]
    rate_scales: tuple[float, ...]
    cpu_ms: tuple[float, ...]
    start_times: tuple[float, ...]
    seeds: tuple[int, ...]
    limit: float | None = None
    """Compressed seconds of each trace simulated (None: all of it)."""
    hour: float = 3600.0
    """Seconds of a synthetic shape before compression."""
    synthetic_rate: float = 1.0
    """A synthetic shape's base rate before compression, requests/s (its peak: 10x)."""

    def cells(self) -> list[Cell]:
        return [
            Cell(*values)
            for values in itertools.product(
                self.workloads,
                self.speedups,
                self.rate_scales,
                self.cpu_ms,
                self.start_times,
                self.seeds,
            )
        ]


GRIDS = {
    "small": Grid(
        workloads=("conv", "code", "spike", "diurnal"),
        speedups=(10.0, 40.0),
        rate_scales=(1.0,),
        cpu_ms=(7.0,),
        start_times=(0.06, 2.0),
        seeds=(0,),
        limit=30.0,
        hour=600.0,
    ),
    "full": Grid(
        workloads=(*TRACES, *SHAPES),
        speedups=(5.0, 10.0, 40.0),
        rate_scales=(1.0, 3.0),
        cpu_ms=(3.0, 10.0, 30.0),
        start_times=(0.06, 1.0, 10.0),
        seeds=(0, 1),
    ),
}


@dataclass(frozen=True)
class Cell:
    workload: str
    speedup: float
    rate_scale: float
    cpu_ms: float
    start_time: float
    seed: int

    @property
    def label(self) -> str:
        return (
            f"{self.workload} x{self.speedup:g} time x{self.rate_scale:g} rate, "
            f"{self.cpu_ms:g} ms, start {self.start_time:g} s, seed {self.seed}"
        )


@dataclass(frozen=True)
class CellResult:
    """Every policy's score on one cell, in `POLICIES` order."""

    cell: Cell
    scores: tuple[Score, ...]

    def score(self, policy: str) -> Score:
        return self.scores[POLICIES.index(policy)]

    def over(self, policy: str) -> float:
        """Percent of requests over the objective."""
        return self.score(policy).over_objective_percent

    def cost(self, policy: str) -> float:
        """Replica-seconds against the oracle's."""
        oracle = self.score("oracle").replica_seconds
        return self.score(policy).replica_seconds / oracle if oracle else float("nan")

    @property
    def oracle_meets(self) -> bool:
        return self.over("oracle") <= MEETS_OBJECTIVE_PERCENT


def build_workload(cell: Cell, grid: Grid, traces: Path) -> Workload:
    service = ServiceModel(mean=cell.cpu_ms / 1000)
    if cell.workload in TRACES:
        return from_trace(
            trace_file(traces, cell.workload),
            service,
            cell.seed,
            cell.speedup,
            cell.rate_scale,
            grid.limit,
        )
    rate = grid.synthetic_rate * cell.speedup * cell.rate_scale
    return synthetic(cell.workload, rate, grid.hour / cell.speedup, service, cell.seed)


def run_cell(cell: Cell, grid: Grid, traces: Path) -> CellResult:
    workload = build_workload(cell, grid, traces)
    platform = Platform(start_time=cell.start_time)
    result = compare(
        workload, sample_endpoint(MAX_REPLICAS), platform, cell.seed, POLICIES, profile=LOCAL
    )
    return CellResult(cell, result.scores)


def _run_packed(job: tuple[Cell, Grid, Path]) -> CellResult:
    return run_cell(*job)


def check_grid(grid: Grid, traces: Path) -> None:
    """Fail before the first cell on what would fail later: an unknown workload, no traces."""
    for name in grid.workloads:
        if name not in TRACES and name not in SHAPES:
            raise EbbtideError(
                f"unknown workload {name!r}; choose from {', '.join((*TRACES, *SHAPES))}"
            )
        if name in TRACES and not trace_file(traces, name).is_file():
            raise EbbtideError(
                f"{trace_file(traces, name)} not found; pass --traces DIR, the directory "
                "holding the AzureLLMInferenceTrace_*.csv files"
            )


def run(
    grid: Grid,
    traces: Path,
    jobs: int = 1,
    progress: Callable[[CellResult], None] | None = None,
) -> Sweep:
    """Run every cell, in order; with `jobs` > 1 in that many processes (same results)."""
    check_grid(grid, traces)
    work = [(cell, grid, traces) for cell in grid.cells()]
    results: list[CellResult] = []

    def collect(outcomes: Iterator[CellResult]) -> None:
        for outcome in outcomes:
            results.append(outcome)
            if progress is not None:
                progress(outcome)

    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            collect(pool.imap(_run_packed, work))
    else:
        collect(map(_run_packed, work))
    return Sweep(grid, tuple(results))


@dataclass(frozen=True)
class Standing:
    """ebbtide against one rival over the cells: wins (fewer requests over the objective),
    ties, losses, the worst loss, and the cells where a win was possible at all."""

    rival: str
    wins: int
    ties: int
    losses: int
    worst: CellResult | None
    beatable: int
    """Cells where the rival had a request over the objective. Where it had none, no policy
    can have fewer, so this is the most wins any policy could have."""

    @property
    def cells(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def win_share(self) -> float:
        return self.wins / self.cells if self.cells else 0.0

    @property
    def not_more(self) -> int:
        """Cells where ebbtide had no more requests over the objective than the rival."""
        return self.wins + self.ties


@dataclass(frozen=True)
class Sweep:
    grid: Grid
    results: tuple[CellResult, ...]

    def standing(self, rival: str) -> Standing:
        wins = ties = losses = beatable = 0
        worst: CellResult | None = None
        for result in self.results:
            ours, theirs = (
                result.score("ebbtide").over_objective,
                result.score(rival).over_objective,
            )
            beatable += theirs > 0
            if ours < theirs:
                wins += 1
            elif ours == theirs:
                ties += 1
            else:
                losses += 1
                if worst is None or _margin(result, rival) > _margin(worst, rival):
                    worst = result
        return Standing(rival, wins, ties, losses, worst, beatable)

    def within_cost(self, policy: str = "ebbtide", limit: float = COST_LIMIT) -> int:
        return sum(1 for r in self.results if r.cost(policy) <= limit)

    def total_over_percent(self, policy: str) -> float:
        """Requests over the objective across every cell, percent of all requests."""
        over = sum(r.score(policy).over_objective for r in self.results)
        requests = sum(r.score(policy).requests for r in self.results)
        return 100.0 * over / requests if requests else 0.0

    def total_cost(self, policy: str) -> float:
        """Replica-seconds across every cell against the oracle's."""
        oracle = sum(r.score("oracle").replica_seconds for r in self.results)
        ours = sum(r.score(policy).replica_seconds for r in self.results)
        return ours / oracle if oracle else float("nan")

    def median_cost(self, policy: str) -> float:
        ordered = sorted(r.cost(policy) for r in self.results)
        return ordered[len(ordered) // 2] if ordered else float("nan")

    def cells_meeting(self, policy: str) -> int:
        return sum(1 for r in self.results if r.over(policy) <= MEETS_OBJECTIVE_PERCENT)

    def objective_standing(self) -> ObjectiveStanding:
        """ebbtide with the objective in its spec, in the cells where the oracle meets it, and
        in those where the reactive oracle meets it within the same cost."""
        feasible = [r for r in self.results if r.oracle_meets]
        reachable = [r for r in feasible if _meets_within_cost(r, REACTIVE)]
        return ObjectiveStanding(
            feasible=len(feasible),
            met=sum(1 for r in feasible if r.over(OBJECTIVE_POLICY) <= MEETS_OBJECTIVE_PERCENT),
            met_within_cost=sum(1 for r in feasible if _meets_within_cost(r, OBJECTIVE_POLICY)),
            reachable=len(reachable),
            reachable_met_within_cost=sum(
                1 for r in reachable if _meets_within_cost(r, OBJECTIVE_POLICY)
            ),
        )


def _meets_within_cost(result: CellResult, policy: str) -> bool:
    return (
        result.over(policy) <= MEETS_OBJECTIVE_PERCENT
        and result.cost(policy) <= OBJECTIVE_COST_LIMIT
    )


@dataclass(frozen=True)
class ObjectiveStanding:
    """Of the cells where the oracle meets the objective: those where ebbtide with the
    objective in its spec meets it, and meets it within `OBJECTIVE_COST_LIMIT` of the oracle's
    replica-seconds; and of those, the ones a policy that does not predict can reach (the
    reactive oracle meets it within the same cost) and how many of them ebbtide does."""

    feasible: int
    met: int
    met_within_cost: int
    reachable: int = 0
    reachable_met_within_cost: int = 0

    def line(self) -> str:
        share = self.met_within_cost / self.feasible if self.feasible else 0.0
        reached = self.reachable_met_within_cost / self.reachable if self.reachable else 0.0
        return (
            f"{OBJECTIVE_POLICY}: meets the objective in {self.met}/{self.feasible} of the cells "
            f"where the oracle does, {self.met_within_cost}/{self.feasible} ({share:.0%}) at "
            f"<= {OBJECTIVE_COST_LIMIT:g}x the oracle's replica-seconds\n"
            f"without foresight: the {REACTIVE} meets it at <= {OBJECTIVE_COST_LIMIT:g}x in "
            f"{self.reachable}/{self.feasible} of those cells; {OBJECTIVE_POLICY} in "
            f"{self.reachable_met_within_cost}/{self.reachable} ({reached:.0%}) of them"
        )


def _margin(result: CellResult, rival: str) -> float:
    return result.over("ebbtide") - result.over(rival)


TOTAL_HEADERS = (
    "POLICY",
    "OVER-OBJECTIVE",
    "CELLS-MEETING",
    "VS-ORACLE",
    "MEDIAN-VS-ORACLE",
    "CELLS-WITHIN-1.25X",
)


def total_rows(sweep: Sweep) -> list[list[str]]:
    cells = len(sweep.results)
    return [
        [
            policy,
            f"{sweep.total_over_percent(policy):.2f}%",
            f"{sweep.cells_meeting(policy)}/{cells}",
            f"{sweep.total_cost(policy):.2f}x",
            f"{sweep.median_cost(policy):.2f}x",
            f"{sweep.within_cost(policy)}/{cells}",
        ]
        for policy in POLICIES
    ]


STANDING_HEADERS = (
    "RIVAL",
    "EBBTIDE-FEWER",
    "TIES",
    "EBBTIDE-MORE",
    "NOT-MORE",
    "FEWER-POSSIBLE",
    "WORST-LOSS",
)
"""FEWER-POSSIBLE: the cells where the rival had any request over the objective, the most
cells any policy could have fewer in."""


def standing_rows(sweep: Sweep) -> list[list[str]]:
    rows = []
    for rival in RIVALS:
        s = sweep.standing(rival)
        worst = (
            f"{s.worst.over('ebbtide'):.2f}% vs {s.worst.over(rival):.2f}% ({s.worst.cell.label})"
            if s.worst
            else "-"
        )
        rows.append(
            [
                rival,
                f"{s.wins}/{s.cells} ({s.win_share:.0%})",
                str(s.ties),
                str(s.losses),
                _share_of(s.not_more, s.cells),
                _share_of(s.beatable, s.cells),
                worst,
            ]
        )
    return rows


def _share_of(count: int, cells: int) -> str:
    return f"{count}/{cells} ({count / cells:.0%})" if cells else "0/0"


CELL_FIELDS = ("workload", "speedup", "rate_scale", "cpu_ms", "start_time", "seed", "requests")


def cell_records(sweep: Sweep) -> list[dict[str, str | float | int]]:
    """One flat record per cell: the cell, then per policy its share over and its cost."""
    records = []
    for result in sweep.results:
        c = result.cell
        record: dict[str, str | float | int] = {
            "workload": c.workload,
            "speedup": c.speedup,
            "rate_scale": c.rate_scale,
            "cpu_ms": c.cpu_ms,
            "start_time": c.start_time,
            "seed": c.seed,
            "requests": result.score("oracle").requests,
        }
        for policy in POLICIES:
            record[f"{policy}_over_percent"] = round(result.over(policy), 4)
            record[f"{policy}_vs_oracle"] = round(result.cost(policy), 4)
        records.append(record)
    return records


def record_fields() -> list[str]:
    return [*CELL_FIELDS] + [
        f"{policy}_{kind}" for policy in POLICIES for kind in ("over_percent", "vs_oracle")
    ]


def heatmap(path: Path, sweep: Sweep) -> None:
    """Per rival, ebbtide's share over the objective minus the rival's (percentage points,
    green where ebbtide has fewer), and ebbtide's cost against the oracle's; rows are the
    workloads in time and rate, columns CPU per request and start time, seeds averaged."""
    plt = pyplot()
    from matplotlib.colors import Normalize, SymLogNorm, TwoSlopeNorm

    grid = sweep.grid
    rows = list(itertools.product(grid.workloads, grid.speedups, grid.rate_scales))
    columns = list(itertools.product(grid.cpu_ms, grid.start_times))
    by_key: dict[tuple[object, ...], list[CellResult]] = {}
    for result in sweep.results:
        c = result.cell
        by_key.setdefault((c.workload, c.speedup, c.rate_scale, c.cpu_ms, c.start_time), []).append(
            result
        )

    def matrix(value: Callable[[CellResult], float]) -> list[list[float]]:
        out = []
        for row in rows:
            line = []
            for column in columns:
                found = by_key.get((*row, *column), [])
                line.append(sum(value(r) for r in found) / len(found) if found else float("nan"))
            out.append(line)
        return out

    def against(rival: str) -> Callable[[CellResult], float]:
        return lambda r: r.over("ebbtide") - r.over(rival)

    panels: list[tuple[str, list[list[float]], str]] = [
        (
            f"ebbtide - {rival}: points of requests over the objective",
            matrix(against(rival)),
            "diff",
        )
        for rival in RIVALS
    ]
    panels.append(("ebbtide replica-seconds / oracle", matrix(lambda r: r.cost("ebbtide")), "cost"))
    height = max(3.5, 0.2 * len(rows) + 1.6)
    width = max(4.5, 0.45 * len(columns) + 2.5)
    figure, axes = plt.subplots(2, 2, figsize=(2 * width, 2 * height), squeeze=False)
    for axis, (title, values, kind) in zip(axes.flat, panels, strict=True):
        norm: Normalize
        if kind == "diff":
            norm = SymLogNorm(linthresh=0.5, vmin=-50, vmax=50)
            image = axis.imshow(values, cmap="RdYlGn_r", norm=norm, aspect="auto")
            text = "{:+.1f}"
        else:
            norm = TwoSlopeNorm(vcenter=COST_LIMIT, vmin=0.8, vmax=3.0)
            image = axis.imshow(values, cmap="RdYlGn_r", norm=norm, aspect="auto")
            text = "{:.2f}"
        for y, line in enumerate(values):
            for x, value in enumerate(line):
                if value == value:  # not NaN
                    axis.text(x, y, text.format(value), ha="center", va="center", fontsize=5)
        axis.set_title(title, fontsize=8)
        axis.set_xticks(range(len(columns)))
        axis.set_xticklabels([f"{c:g}ms {s:g}s" for c, s in columns], rotation=90, fontsize=6)
        axis.set_yticks(range(len(rows)))
        axis.set_yticklabels([f"{w} x{t:g} r{r:g}" for w, t, r in rows], fontsize=6)
        figure.colorbar(image, ax=axis, shrink=0.6)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def pyplot() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EbbtideError(
            "the plot needs matplotlib: pip install 'ebbtide[plot]' (or pass --no-plot)"
        ) from None
    return plt


def grid_from(name: str, seeds: Sequence[int] | None = None) -> Grid:
    if name not in GRIDS:
        raise EbbtideError(f"--grid {name!r}: choose {' or '.join(GRIDS)}")
    grid = GRIDS[name]
    if seeds is not None:
        grid = Grid(
            grid.workloads,
            grid.speedups,
            grid.rate_scales,
            grid.cpu_ms,
            grid.start_times,
            tuple(seeds),
            grid.limit,
            grid.hour,
            grid.synthetic_rate,
        )
    return grid


DIMENSIONS = ("workload", "speedup", "rate_scale", "cpu_ms", "start_time")
BREAKDOWN_HEADERS = (
    "VALUE",
    "CELLS",
    "FEWER-THAN-HPA",
    "FEWER-THAN-KPA",
    "FEWER-THAN-RAY",
    "WITHIN-1.25X",
    "EBBTIDE-OVER",
    "ORACLE-OVER",
)


def breakdown_rows(
    records: Sequence[dict[str, str | float | int]], dimension: str
) -> list[list[str]]:
    """Per value of one dimension (from `cell_records`, or a saved sweep's "cells"): in how
    many cells ebbtide had fewer requests over the objective than each rival, in how many it
    cost at most `COST_LIMIT` times the oracle, and the mean share over for it and the oracle."""
    groups: dict[str | float | int, list[dict[str, str | float | int]]] = {}
    for record in records:
        groups.setdefault(record[dimension], []).append(record)
    rows = []
    for value, group in groups.items():
        mean = {
            p: sum(float(r[f"{p}_over_percent"]) for r in group) / len(group)
            for p in ("ebbtide", "oracle")
        }
        rows.append(
            [
                f"{value:g}" if isinstance(value, float) else str(value),
                str(len(group)),
                *(_share(group, _fewer_than(rival)) for rival in RIVALS),
                _share(group, _within_cost),
                f"{mean['ebbtide']:.2f}%",
                f"{mean['oracle']:.2f}%",
            ]
        )
    return rows


Record = dict[str, str | float | int]


def _share(group: Sequence[Record], test: Callable[[Record], bool]) -> str:
    return _share_of(sum(1 for r in group if test(r)), len(group))


def _fewer_than(rival: str) -> Callable[[Record], bool]:
    def fewer(record: Record) -> bool:
        return float(record["ebbtide_over_percent"]) < float(record[f"{rival}_over_percent"])

    return fewer


def _within_cost(record: Record) -> bool:
    return float(record["ebbtide_vs_oracle"]) <= COST_LIMIT
