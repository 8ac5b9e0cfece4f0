"""Replica processes: naming, templates, start, readiness, limits, restart, drain and stop."""

from ebbtide.supervisor.launcher import SubprocessLauncher, serve_command
from ebbtide.supervisor.limits import CgroupLimits, LimitsOutcome
from ebbtide.supervisor.replicas import (
    Backoff,
    Launcher,
    Phase,
    Replica,
    ReplicaProcess,
    Supervisor,
    SupervisorSettings,
    free_port,
)
from ebbtide.supervisor.template import ReplicaTemplate
from ebbtide.supervisor.warm import ForkedReplica, WarmForkLauncher, WarmSettings

__all__ = [
    "Backoff",
    "CgroupLimits",
    "ForkedReplica",
    "Launcher",
    "LimitsOutcome",
    "Phase",
    "Replica",
    "ReplicaProcess",
    "ReplicaTemplate",
    "SubprocessLauncher",
    "Supervisor",
    "SupervisorSettings",
    "WarmForkLauncher",
    "WarmSettings",
    "free_port",
    "serve_command",
]
