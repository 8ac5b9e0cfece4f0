"""Release timing: how long idle replicas are kept follows how long a new one takes to start.

Giving up a replica saves its cost from now on; needing it again costs the requests that queue
while a replacement starts. A replica forked from a warm process is ready in a few hundredths of
a second and a model loaded from scratch may take seconds, so one scale-down window cannot suit
both: with `Profile.release`, the scale-down stabilization window and the burst hold are a
number of replica starts, measured on the endpoint's own replicas (from `started_at` to
`ready_since`, the median of the latest few), with a floor in seconds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from ebbtide.autoscaler.observation import Observation, ReplicaSample
from ebbtide.autoscaler.policy import Policy
from ebbtide.autoscaler.profiles import ReleaseTiming
from ebbtide.autoscaler.state import State


@dataclass(frozen=True)
class Timing:
    """The scale-down timing one decision used."""

    start: float
    """Seconds a replica takes to start: measured, or the profile's assumption."""
    measured: bool
    scale_down_window: float
    burst_hold: float

    def describe(self, settings: ReleaseTiming) -> str:
        """Where the scale-down window came from, for people: `16 starts of 0.5 s, assumed
        until one is measured`, `its 2 s floor, as replicas start in 0.06 s`."""
        source = "as measured" if self.measured else "assumed until one is measured"
        if self.scale_down_window <= settings.minimum:
            return f"its {settings.minimum:g} s floor, as replicas start in {self.start:.2g} s"
        return f"{settings.window_starts:g} starts of {self.start:.2g} s, {source}"


def note_starts(state: State, observation: Observation, settings: ReleaseTiming) -> State:
    """Record how long each replica that became ready since the last decision took to start.

    Only a start made while another replica was serving counts: that is what a released
    replica's replacement takes. An endpoint's first replica (or one after scale to zero) may
    also load the model into the process its siblings are forked from, seconds the next
    replicas do not pay; and a replica ready the instant it was created was there before the
    autoscaler was."""
    present = {r.name for r in observation.replicas}
    timed = state.timed & present
    starts = list(state.start_times)
    for replica in observation.replicas:
        if replica.name in timed or not replica.ready or replica.ready_since is None:
            continue
        timed |= {replica.name}
        took = replica.ready_since - replica.started_at
        if took > 0 and _started_beside_a_ready_one(replica, observation):
            starts.append(took)
    kept = tuple(starts[-settings.samples :])
    if kept == state.start_times and timed == state.timed:
        return state
    return replace(state, start_times=kept, timed=frozenset(timed))


def _started_beside_a_ready_one(replica: ReplicaSample, observation: Observation) -> bool:
    return any(
        other.name != replica.name
        and other.ready
        and other.ready_since is not None
        and other.ready_since <= replica.started_at
        for other in observation.replicas
    )


def timing(policy: Policy, state: State) -> Timing | None:
    """The windows for this endpoint's measured start; None when its windows are fixed."""
    settings = policy.release
    if settings is None:
        return None
    measured = bool(state.start_times)
    start = statistics.median(state.start_times) if measured else settings.assumed_start
    window, hold = settings.windows(start)
    return Timing(start, measured, window, hold)


def applied(policy: Policy, timing: Timing | None) -> Policy:
    """The policy with its scale-down window and burst hold set from `timing`."""
    if timing is None:
        return policy
    burst = None if policy.burst is None else replace(policy.burst, hold=timing.burst_hold)
    scale_down = replace(policy.scale_down, stabilization_window=timing.scale_down_window)
    return replace(policy, scale_down=scale_down, burst=burst)
