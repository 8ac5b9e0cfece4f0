"""Whether a trace's arrivals repeat: the autocorrelation of its arrivals per bin, at each lag.

    .venv/bin/python bench/trace_autocorrelation.py --bin 1 --lags 120

A policy can start replicas ahead of a burst only if something tells it the burst is coming.
A period in the traffic would show as a peak of the autocorrelation at that lag; a
monotonic decay says bursts cluster (a busy second tends to follow a busy second) and nothing
more. Prints, per trace, the autocorrelation at the first lags and the highest lags found.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ebbtide.sim.sweep import TRACES, trace_file
from ebbtide.sim.workload import read_timestamps


def autocorrelation(counts: np.ndarray, lags: int) -> np.ndarray:
    centred = counts - counts.mean()
    energy = float(np.dot(centred, centred))
    return np.array([np.dot(centred[:-lag], centred[lag:]) / energy for lag in range(1, lags + 1)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=Path("../shared/traces"))
    parser.add_argument("--bin", type=float, default=1.0, help="seconds per bin")
    parser.add_argument("--lags", type=int, default=120, help="bins of lag to compute")
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    for name in TRACES:
        stamps = np.array(read_timestamps(trace_file(args.traces, name)))
        bins = ((stamps - stamps[0]) / args.bin).astype(int)
        counts = np.bincount(bins).astype(float)
        values = autocorrelation(counts, args.lags)
        first = ", ".join(f"{(i + 1) * args.bin:g} s {v:.2f}" for i, v in enumerate(values[:8]))
        highest = np.argsort(values)[::-1][: args.top]
        peaks = ", ".join(f"{(i + 1) * args.bin:g} s {values[i]:.2f}" for i in highest)
        rising = [
            (i + 1) * args.bin
            for i in range(1, len(values) - 1)
            if values[i] > values[i - 1] + 0.02 and values[i] > values[i + 1] + 0.02
        ]
        print(f"{name}: {len(stamps)} arrivals, {counts.size} bins of {args.bin:g} s")
        print(f"  first lags: {first}")
        print(f"  highest: {peaks}")
        print(f"  local peaks above both neighbours by 0.02: {rising or 'none'}")


if __name__ == "__main__":
    main()
