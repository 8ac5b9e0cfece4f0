"""Pure autoscaling: `decide(observation, policy, state, now) -> Decision`.

The controller gathers an `Observation` (replicas and gateway counters), resolves a `Policy`
from the endpoint and a `Profile` (`policy_for`), and calls `decide` once per sync period with
the `State` the previous decision returned. Nothing here reads a clock or does I/O.
"""

from ebbtide.autoscaler.behavior import Step
from ebbtide.autoscaler.calculator import Proposal, Tolerances
from ebbtide.autoscaler.decision import Decision, decide
from ebbtide.autoscaler.explain import explain
from ebbtide.autoscaler.observation import Observation, ReplicaSample, Traffic
from ebbtide.autoscaler.policy import MetricGoal, Policy, policy_for
from ebbtide.autoscaler.profiles import (
    KUBERNETES,
    LOCAL,
    PROFILES,
    BurstSettings,
    DirectionRules,
    ForecastSettings,
    Profile,
    RatePolicy,
    ZeroSettings,
)
from ebbtide.autoscaler.state import State

__all__ = [
    "KUBERNETES",
    "LOCAL",
    "PROFILES",
    "BurstSettings",
    "Decision",
    "DirectionRules",
    "ForecastSettings",
    "MetricGoal",
    "Observation",
    "Policy",
    "Profile",
    "Proposal",
    "RatePolicy",
    "ReplicaSample",
    "State",
    "Step",
    "Tolerances",
    "Traffic",
    "ZeroSettings",
    "decide",
    "explain",
    "policy_for",
]
