"""`ebbtide simulate`: scaling policies side by side on a trace or a synthetic load."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ebbtide.autoscaler import PROFILES, policy_for
from ebbtide.cli.output import table
from ebbtide.core.errors import EbbtideError, SpecError
from ebbtide.sim import (
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
from ebbtide.sim.compare import sample_endpoint
from ebbtide.sim.report import TABLE_HEADERS
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
    ] = ",".join(POLICIES),
    fixed: Annotated[
        int | None, typer.Option(help="Size of the fixed fleet (default: the oracle's peak).")
    ] = None,
    profile: Annotated[str, typer.Option(help="ebbtide's profile: local or kubernetes.")] = "local",
    seed: Annotated[int, typer.Option(help="Seed for arrivals, CPU times and routing.")] = 0,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="Write the PNG here.")] = Path(
        "simulation.png"
    ),
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Skip the PNG.")] = False,
) -> None:
    """Compare scaling policies on the same arrivals, side by side.

    ebbtide's default, the HPA with Kubernetes' defaults, Knative's KPA, Ray Serve, a fixed
    fleet and a clairvoyant oracle, each run on the same trace or synthetic load."""
    try:
        began = time.perf_counter()
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
        endpoint = _endpoint(filename)
        chosen = [p.strip() for p in policies.split(",") if p.strip()]
        result = compare(workload, endpoint, platform, seed, chosen, fixed, None, PROFILES[profile])
        _report(result, endpoint, service, seed, time.perf_counter() - began)
        if not no_plot and plot_path is not None:
            plot(plot_path, workload, result.results, platform)
            typer.echo(f"plot: {plot_path}")
    except SpecError as error:
        typer.echo(f"error: {error}", err=True)
        for problem in error.problems:
            if problem != str(error):
                typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    except EbbtideError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


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
