"""`ebbtide simulate`: scaling policies side by side on a trace or a synthetic load."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ebbtide.autoscaler import PROFILES, policy_for
from ebbtide.cli.output import table
from ebbtide.core.errors import EbbtideError, SpecError
from ebbtide.sim import (
    DEFAULT_POLICIES,
    POLICIES,
    SHAPES,
    Comparison,
    Platform,
    ServiceModel,
    Workload,
    compare,
    from_trace,
    plot,
    synthetic,
    table_rows,
)
from ebbtide.sim import sweep as sweeping
from ebbtide.sim.compare import sample_endpoint
from ebbtide.sim.report import TABLE_HEADERS
from ebbtide.sim.sweep import GRIDS, grid_from
from ebbtide.sim.tradeoff import (
    TRADEOFF_HEADERS,
    Tradeoff,
    plot_tradeoff,
    tradeoff_rows,
)
from ebbtide.sim.tradeoff import tradeoff as run_tradeoff
from ebbtide.spec import InferenceEndpoint, parse_documents, read_text, validate


def simulate(
    trace: Annotated[
        Path | None, typer.Option(help="A trace CSV with a TIMESTAMP column (shared/traces).")
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help=f"A synthetic load instead: {', '.join(SHAPES)}.")
    ] = None,
    speedup: Annotated[
        float, typer.Option(help="Compress the trace's time this many times.")
    ] = 10.0,
    rate_scale: Annotated[float, typer.Option(help="Multiply the trace's rate.")] = 1.0,
    limit: Annotated[
        float | None, typer.Option(help="Simulate only this many (compressed) seconds.")
    ] = None,
    rate: Annotated[float, typer.Option(help="Synthetic base rate, requests/s.")] = 50.0,
    factor: Annotated[float, typer.Option(help="Synthetic peak over base (spike: 10x).")] = 10.0,
    duration: Annotated[float, typer.Option(help="Synthetic length in seconds.")] = 360.0,
    steps: Annotated[
        str | None, typer.Option(help="Rates for --shape steps: RATE:SECONDS,...")
    ] = None,
    filename: Annotated[
        Path | None,
        typer.Option(
            "-f", "--filename", help="The InferenceEndpoint to simulate (default: a sample)."
        ),
    ] = None,
    cpu_ms: Annotated[float, typer.Option(help="Mean CPU milliseconds per request.")] = 7.0,
    cpu_cv: Annotated[float, typer.Option(help="Coefficient of variation of CPU time.")] = 0.3,
    start_time: Annotated[
        float,
        typer.Option(
            help="Seconds from a scale-up decision to a ready replica (default: a warm fork, "
            "as measured on the local platform)."
        ),
    ] = 0.06,
    concurrency: Annotated[int, typer.Option(help="Requests one replica serves at once.")] = 4,
    discipline: Annotated[str, typer.Option(help="ps (processor sharing) or fifo.")] = "ps",
    objective_ms: Annotated[float, typer.Option(help="The p99 latency objective.")] = 100.0,
    timeout: Annotated[float, typer.Option(help="Seconds a client waits.")] = 30.0,
    policies: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {', '.join(POLICIES)}.")
    ] = ",".join(DEFAULT_POLICIES),
    fixed: Annotated[
        int | None, typer.Option(help="Size of the fixed fleet (default: the oracle's peak).")
    ] = None,
    profile: Annotated[str, typer.Option(help="ebbtide's profile: local or kubernetes.")] = "local",
    seed: Annotated[int, typer.Option(help="Seed for arrivals, CPU times and routing.")] = 0,
    plot_path: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Write the PNG here (default: simulation.png, sweep.png or tradeoff.png).",
        ),
    ] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Skip the PNG.")] = False,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep", help="Run every policy over a grid of workloads and platforms (--grid)."
        ),
    ] = False,
    grid: Annotated[str, typer.Option(help=f"The sweep's grid: {' or '.join(GRIDS)}.")] = "small",
    traces: Annotated[
        Path,
        typer.Option(help="For --sweep: the directory of the AzureLLMInferenceTrace_*.csv files."),
    ] = Path("../shared/traces"),
    jobs: Annotated[int, typer.Option(help="For --sweep: processes running cells.")] = 1,
    seeds: Annotated[
        str | None, typer.Option(help="For --sweep: seeds instead of the grid's, e.g. 0,1,2.")
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "-o", "--output", help="For --sweep and --tradeoff: table, json or csv (per cell)."
        ),
    ] = "table",
    save: Annotated[
        Path | None,
        typer.Option(help="For --sweep: also write the JSON document (-o json) to this file."),
    ] = None,
    tradeoff: Annotated[
        bool,
        typer.Option(
            "--tradeoff",
            help="Sweep each policy's main knob on the workload: cost against requests over "
            "the objective.",
        ),
    ] = False,
) -> None:
    """Compare scaling policies on the same arrivals, side by side.

    ebbtide's default, the HPA with Kubernetes' defaults, Knative's KPA, Ray Serve, a fixed
    fleet and a clairvoyant oracle, each run on the same trace or synthetic load; with --sweep
    over a grid of them, with --tradeoff at every setting of each policy's knob."""
    try:
        began = time.perf_counter()
        if output not in OUTPUTS:
            raise EbbtideError(f"-o {output!r}: choose {', '.join(OUTPUTS)}")
        if sweep and tradeoff:
            raise EbbtideError("choose one of --sweep and --tradeoff")
        if sweep:
            chosen_seeds = _seeds(seeds)
            _run_sweep(
                grid_from(grid, chosen_seeds), traces, jobs, output, plot_path, no_plot, save
            )
            return
        service = ServiceModel(mean=cpu_ms / 1000, cv=cpu_cv)
        workload = _workload(
            trace, shape, speedup, rate_scale, limit, rate, factor, duration, steps, service, seed
        )
        if discipline not in ("ps", "fifo"):
            raise EbbtideError(f"--discipline {discipline!r}: choose ps or fifo")
        if profile not in PROFILES:
            raise EbbtideError(f"--profile {profile!r}: choose {' or '.join(PROFILES)}")
        platform = Platform(
            start_time=start_time,
            concurrency=concurrency,
            discipline="ps" if discipline == "ps" else "fifo",
            timeout=timeout,
            objective=objective_ms / 1000,
        )
        if tradeoff:
            _run_tradeoff(workload, platform, seed, output, plot_path, no_plot)
            return
        endpoint = _endpoint(filename)
        chosen = [p.strip() for p in policies.split(",") if p.strip()]
        result = compare(workload, endpoint, platform, seed, chosen, fixed, None, PROFILES[profile])
        _report(result, endpoint, service, seed, time.perf_counter() - began)
        if not no_plot:
            png = plot_path or Path("simulation.png")
            plot(png, workload, result.results, platform)
            typer.echo(f"plot: {png}")
    except SpecError as error:
        typer.echo(f"error: {error}", err=True)
        for problem in error.problems:
            if problem != str(error):
                typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    except EbbtideError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


OUTPUTS = ("table", "json", "csv")


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        chosen = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise EbbtideError(f"--seeds {text!r}: give whole numbers separated by commas") from None
    if not chosen:
        raise EbbtideError("--seeds: give at least one seed, e.g. --seeds 0,1")
    return chosen


def _run_sweep(
    grid: sweeping.Grid,
    traces: Path,
    jobs: int,
    output: str,
    plot_path: Path | None,
    no_plot: bool,
    save: Path | None = None,
) -> None:
    if jobs < 1:
        raise EbbtideError("--jobs must be at least 1")
    began = time.perf_counter()
    cells = len(grid.cells())
    done = 0

    def progress(result: sweeping.CellResult) -> None:
        nonlocal done
        done += 1
        typer.echo(
            f"[{done}/{cells}] {result.cell.label}: ebbtide {result.over('ebbtide'):.2f}% over, "
            f"{result.cost('ebbtide'):.2f}x oracle",
            err=True,
        )

    result = sweeping.run(grid, traces, jobs, progress)
    elapsed = time.perf_counter() - began
    document = {
        "grid": dataclasses.asdict(grid),
        "totals": [
            dict(zip(sweeping.TOTAL_HEADERS, row, strict=True))
            for row in sweeping.total_rows(result)
        ],
        "standings": [
            dataclasses.asdict(s) | {"worst": s.worst.cell.label if s.worst else None}
            for s in map(result.standing, sweeping.RIVALS)
        ],
        "objective": dataclasses.asdict(result.objective_standing()),
        "cells": sweeping.cell_records(result),
    }
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(document, indent=1) + "\n")
    if output == "json":
        typer.echo(json.dumps(document, indent=1))
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=sweeping.record_fields())
        writer.writeheader()
        writer.writerows(sweeping.cell_records(result))
    else:
        _report_sweep(result, elapsed)
    if not no_plot:
        png = plot_path or Path("sweep.png")
        sweeping.heatmap(png, result)
        typer.echo(f"plot: {png}", err=output != "table")


def _report_sweep(result: sweeping.Sweep, elapsed: float) -> None:
    cells = len(result.results)
    feasible = sum(1 for r in result.results if r.oracle_meets)
    typer.echo(
        f"grid: {cells} cells ({', '.join(result.grid.workloads)}; time x"
        f"{','.join(f'{v:g}' for v in result.grid.speedups)}; rate x"
        f"{','.join(f'{v:g}' for v in result.grid.rate_scales)}; "
        f"{','.join(f'{v:g}' for v in result.grid.cpu_ms)} ms CPU; start "
        f"{','.join(f'{v:g}' for v in result.grid.start_times)} s; seeds "
        f"{','.join(str(v) for v in result.grid.seeds)}); the oracle meets the objective in "
        f"{feasible} of them"
    )
    typer.echo("")
    typer.echo(table(sweeping.TOTAL_HEADERS, sweeping.total_rows(result)))
    typer.echo("")
    typer.echo(table(sweeping.STANDING_HEADERS, sweeping.standing_rows(result)))
    typer.echo("")
    typer.echo(result.objective_standing().line())
    records = sweeping.cell_records(result)
    for dimension in sweeping.DIMENSIONS:
        typer.echo("")
        typer.echo(f"by {dimension}:")
        typer.echo(table(sweeping.BREAKDOWN_HEADERS, sweeping.breakdown_rows(records, dimension)))
    typer.echo("")
    typer.echo(f"swept in {elapsed:.1f} s")


def _run_tradeoff(
    workload: Workload,
    platform: Platform,
    seed: int,
    output: str,
    plot_path: Path | None,
    no_plot: bool,
) -> None:
    began = time.perf_counter()
    result: Tradeoff = run_tradeoff(workload, platform, seed)
    if output == "json":
        typer.echo(
            json.dumps(
                {
                    "workload": workload.name,
                    "oracle_over_percent": result.oracle.over_objective_percent,
                    "points": [dataclasses.asdict(p) for p in result.points],
                },
                indent=1,
            )
        )
    elif output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["policy", "knob", "value", "over_percent", "vs_oracle"])
        writer.writerows(
            [p.policy, p.knob, p.value, round(p.over_percent, 4), round(p.cost, 4)]
            for p in result.points
        )
    else:
        typer.echo(
            f"workload: {workload.name}: {len(workload.arrivals)} requests over "
            f"{workload.duration:.0f} s; objective p99 {platform.objective * 1000:g} ms; start "
            f"{platform.start_time:g} s; seed {seed}"
        )
        typer.echo("")
        typer.echo(table(TRADEOFF_HEADERS, tradeoff_rows(result)))
        typer.echo("")
        typer.echo(f"simulated in {time.perf_counter() - began:.1f} s")
    if not no_plot:
        png = plot_path or Path("tradeoff.png")
        plot_tradeoff(png, result)
        typer.echo(f"plot: {png}", err=output != "table")


def _workload(
    trace: Path | None,
    shape: str | None,
    speedup: float,
    rate_scale: float,
    limit: float | None,
    rate: float,
    factor: float,
    duration: float,
    steps: str | None,
    service: ServiceModel,
    seed: int,
) -> Workload:
    if (trace is None) == (shape is None):
        raise EbbtideError("give either --trace FILE or --shape (steps, spike, ramp, diurnal)")
    if trace is not None:
        return from_trace(trace, service, seed, speedup, rate_scale, limit)
    return synthetic(shape or "", rate, duration, service, seed, factor, steps)


def _endpoint(path: Path | None) -> InferenceEndpoint:
    if path is None:
        return sample_endpoint()
    text, source = read_text(str(path))
    for document in parse_documents(text, source):
        return validate(document).endpoint
    raise SpecError(f"{source}: no InferenceEndpoint found in the input")


def _report(
    result: Comparison,
    endpoint: InferenceEndpoint,
    service: ServiceModel,
    seed: int,
    elapsed: float,
) -> None:
    workload, platform = result.workload, result.platform
    metric = ", ".join(
        f"{goal.name} {goal.target:g}{'%' if goal.kind == 'Utilization' else ''}"
        for goal in policy_for(endpoint).metrics
    )
    typer.echo(
        f"workload: {workload.name}: {len(workload.arrivals)} requests over "
        f"{workload.duration:.0f} s ({workload.mean_rate:.1f}/s)"
    )
    typer.echo(
        f"platform: {service.mean * 1000:g} ms CPU per request (cv {service.cv:g}), one core and "
        f"{platform.concurrency} concurrent requests per replica ({platform.discipline}), "
        f"ready {platform.start_time:g} s after a scale-up; objective p99 "
        f"{platform.objective * 1000:g} ms; seed {seed}"
    )
    typer.echo(
        f"endpoint: {endpoint.name}, {endpoint.spec.autoscaling.min_replicas}.."
        f"{endpoint.spec.autoscaling.max_replicas} replicas, target {metric}"
    )
    oracle = result.score_of("oracle")
    typer.echo("")
    typer.echo(
        table(TABLE_HEADERS, table_rows(result.scores, oracle.replica_seconds if oracle else None))
    )
    typer.echo("")
    if result.oracle_utilization is not None:
        typer.echo(
            f"oracle: the fewest replicas per quarter second at {result.oracle_utilization:.0%} "
            "of a core, started ahead; fixed: the oracle's peak unless --fixed"
        )
    typer.echo(f"simulated in {elapsed:.1f} s")
