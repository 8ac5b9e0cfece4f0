"""What the simulated endpoint is asked to do: arrival times and the CPU each request costs.

Arrivals come from a trace (a CSV with a TIMESTAMP column, as the Azure LLM traces in
shared/traces) compressed `speedup` times and thinned or copied to `rate_scale` times its rate,
or from a synthetic shape (steps, spike, ramp, diurnal) drawn as a Poisson process. Everything
random draws from one seeded generator, so a workload is the same on every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ebbtide.core import traces
from ebbtide.core.errors import EbbtideError, TraceError

SHAPES = ("steps", "spike", "ramp", "diurnal")


class WorkloadError(EbbtideError):
    """A workload that cannot be built: an unreadable trace, a bad shape or step list."""


@dataclass(frozen=True)
class Workload:
    """Arrival times (seconds from the start, sorted) and each request's CPU seconds."""

    name: str
    arrivals: tuple[float, ...]
    cpu_seconds: tuple[float, ...]
    duration: float

    @property
    def mean_rate(self) -> float:
        return len(self.arrivals) / self.duration if self.duration else 0.0


@dataclass(frozen=True)
class ServiceModel:
    """CPU per request: lognormal around `mean` with coefficient of variation `cv`."""

    mean: float = 0.007
    cv: float = 0.3

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        if self.cv <= 0:
            return lambda: self.mean
        sigma = math.sqrt(math.log(1 + self.cv**2))
        mu = math.log(self.mean) - sigma**2 / 2
        return lambda: rng.lognormvariate(mu, sigma)


def from_trace(
    path: Path,
    service: ServiceModel,
    seed: int = 0,
    speedup: float = 1.0,
    rate_scale: float = 1.0,
    limit: float | None = None,
) -> Workload:
    """A trace's arrivals, time compressed `speedup` times, rate scaled by `rate_scale`: each
    request becomes `rate_scale` requests (on average, for a fraction) placed at random within
    the gap before the next one."""
    if speedup <= 0 or rate_scale <= 0:
        raise WorkloadError("--speedup and --rate-scale must be above 0")
    rng = random.Random(seed)
    stamps = read_timestamps(path)
    first = stamps[0]
    offsets = [(stamp - first) / speedup for stamp in stamps]
    arrivals: list[float] = []
    for index, offset in enumerate(offsets):
        if limit is not None and offset > limit:
            break
        # Copies spread over the gap to the next arrival: the rate scales, the shape over time
        # stays, and no burst of simultaneous copies appears that the trace never had.
        gap = offsets[index + 1] - offset if index + 1 < len(offsets) else 0.0
        copies = int(rate_scale) + (1 if rng.random() < rate_scale % 1 else 0)
        arrivals.extend(offset + gap * rng.random() for _ in range(copies))
    arrivals.sort()
    duration = max(arrivals[-1] if arrivals else 0.0, (stamps[-1] - first) / speedup)
    if limit is not None:
        duration = min(duration, limit)
    name = f"{path.stem} x{speedup:g} time, x{rate_scale:g} rate"
    return _costed(name, arrivals, duration, service, rng)


def read_timestamps(path: Path) -> list[float]:
    """TIMESTAMP values as seconds, sorted."""
    try:
        return traces.read_timestamps(path)
    except TraceError as error:
        raise WorkloadError(str(error)) from None


def synthetic(
    shape: str,
    rate: float,
    duration: float,
    service: ServiceModel,
    seed: int = 0,
    factor: float = 10.0,
    steps: str | None = None,
) -> Workload:
    """Poisson arrivals whose rate follows `shape`:

    - `steps`: the rates of `steps` (`RATE:SECONDS,...`), or rate, rate x factor, rate;
    - `spike`: `rate`, then `factor` times it for a sixth of the time from the first third;
    - `ramp`: from `rate` up to `factor` times it at mid-time and back down;
    - `diurnal`: a day compressed into `duration`, between `rate` and `factor` times it.
    """
    if rate <= 0 or duration <= 0 or factor <= 0:
        raise WorkloadError("--rate, --duration and --factor must be above 0")
    profile = _rate_function(shape, rate, duration, factor, steps)
    peak = max(profile(duration * i / 1000) for i in range(1001))
    if steps:
        peak = max(peak, *(r for r, _ in parse_steps(steps)))
    rng = random.Random(seed)
    arrivals: list[float] = []
    at = 0.0
    while True:  # thinning: candidates at the peak rate, kept in proportion to the rate
        at += rng.expovariate(peak)
        if at >= duration:
            break
        if rng.random() * peak <= profile(at):
            arrivals.append(at)
    name = f"{shape} {rate:g}/s" + (f" x{factor:g}" if shape != "steps" or not steps else "")
    return _costed(name, arrivals, duration, service, rng)


def parse_steps(text: str) -> list[tuple[float, float]]:
    """`10:60,40:30` -> [(10, 60), (40, 30)]: requests/s for seconds."""
    plan = []
    for part in text.split(","):
        try:
            rate, seconds = part.split(":")
            plan.append((float(rate), float(seconds)))
        except ValueError:
            raise WorkloadError(
                f"{part!r} is not RATE:SECONDS; write steps as 10:60,40:30"
            ) from None
        if plan[-1][0] < 0 or plan[-1][1] <= 0:
            raise WorkloadError(f"{part!r}: a step needs a rate >= 0 and seconds > 0")
    return plan


def _rate_function(
    shape: str, rate: float, duration: float, factor: float, steps: str | None
) -> Callable[[float], float]:
    if shape == "steps":
        plan = (
            parse_steps(steps)
            if steps
            else [(rate, duration / 3), (rate * factor, duration / 3), (rate, duration / 3)]
        )
        edges: list[tuple[float, float]] = []
        end = 0.0
        for step_rate, seconds in plan:
            end += seconds
            edges.append((end, step_rate))
        return lambda t: next((r for e, r in edges if t < e), edges[-1][1])
    if shape == "spike":
        start, end = duration / 3, duration / 3 + duration / 6
        return lambda t: rate * factor if start <= t < end else rate
    if shape == "ramp":
        return lambda t: rate + rate * (factor - 1) * (1 - abs(2 * t / duration - 1))
    if shape == "diurnal":
        return lambda t: rate + rate * (factor - 1) * (1 - math.cos(2 * math.pi * t / duration)) / 2
    raise WorkloadError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def _costed(
    name: str,
    arrivals: Sequence[float],
    duration: float,
    service: ServiceModel,
    rng: random.Random,
) -> Workload:
    draw = service.sampler(rng)
    return Workload(name, tuple(arrivals), tuple(draw() for _ in arrivals), duration)
