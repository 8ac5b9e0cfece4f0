"""Trace-driven simulation of scaling policies, running ebbtide's real `decide` in virtual time.

`compare(workload, endpoint, platform)` runs ebbtide's default, the HPA with Kubernetes'
defaults, Knative's KPA, Ray Serve, a fixed fleet and a clairvoyant oracle on the same
arrivals, and scores each: requests over the latency objective, refused or abandoned requests,
replica-seconds and scaling actions. `ebbtide simulate` is its command line.
"""

from ebbtide.sim.compare import DEFAULT_POLICIES, POLICIES, Comparison, compare
from ebbtide.sim.engine import Simulation, Trace
from ebbtide.sim.platform import Platform
from ebbtide.sim.report import Score, plot, table_rows
from ebbtide.sim.workload import (
    SHAPES,
    ServiceModel,
    Workload,
    WorkloadError,
    from_trace,
    synthetic,
)

__all__ = [
    "DEFAULT_POLICIES",
    "POLICIES",
    "SHAPES",
    "Comparison",
    "Platform",
    "Score",
    "ServiceModel",
    "Simulation",
    "Trace",
    "Workload",
    "WorkloadError",
    "compare",
    "from_trace",
    "plot",
    "synthetic",
    "table_rows",
]
