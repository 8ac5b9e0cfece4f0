"""`decide`: one autoscaling decision, a pure function of what was observed, the policy, the
state the previous decision returned, and the time.

The steps are the HPA's (horizontal.go, reconcileAutoscaler), each recorded with its reason:

1. bounds: outside min..max, go straight to the nearest bound;
2. metrics: every metric proposes a count (`calculator.propose`); the largest wins;
3. stabilize: the most conservative recommendation of each direction's window;
4. limit: the rate policies and the min/max clamp.

ebbtide adds four steps, each recorded the same way: `burst` (a short window that scales up at
once on a surge, `burst.py`), `forecast` (opt-in predictive scale-up, `forecast.py`) and
`objective` (the replicas a latency objective asks for, `objective.py`) between 2 and 3, and
`zero` (scale to and from zero with `minReplicas: 0`, `zero.py`) after 4.

`Decision.conditions` are the HPA's status conditions (AbleToScale, ScalingActive,
ScalingLimited) and `Decision.event` its event text, `New size: 3; reason: cpu resource
utilization (percentage of request) above target`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from ebbtide.autoscaler import burst as bursts
from ebbtide.autoscaler import release, zero
from ebbtide.autoscaler.behavior import Step, limit_rate, stabilize
from ebbtide.autoscaler.calculator import Proposal, Tolerances, propose, traffic_proposal
from ebbtide.autoscaler.demand import estimate
from ebbtide.autoscaler.forecast import forecast_replicas
from ebbtide.autoscaler.objective import (
    MIN_ANSWERS,
    MissedWindow,
    ObjectiveProposal,
    ObjectiveReason,
    compare_with_fewer,
    not_lowered_message,
    note_miss,
    propose_for_objective,
)
from ebbtide.autoscaler.observation import Observation
from ebbtide.autoscaler.policy import Policy
from ebbtide.autoscaler.profiles import DirectionRules
from ebbtide.autoscaler.state import State
from ebbtide.autoscaler.windows import Sample, arrival_rate, concurrency, latency_window
from ebbtide.core.latency import LATENCY_BOUNDS
from ebbtide.spec.models import Condition, MetricStatus
from ebbtide.spec.quantity import canonical

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Decision:
    """The replica count to run, why, and the state to pass to the next decision."""

    desired: int
    current: int
    reasons: tuple[Step, ...]
    """Every step in order, each with the count it produced and the HPA's reason for it."""
    state: State
    conditions: tuple[Condition, ...]
    """Conditions to set (by type); a type not listed keeps its last value. The controller
    adds lastTransitionTime when a status changes."""
    proposals: tuple[Proposal, ...] = ()
    """What each metric asked for, with its current value: the source of status metrics."""
    rescale_reason: str = ""
    """Why the count changes, in the HPA's words: `cpu resource utilization (percentage of
    request) above target`, `All metrics below target`."""
    timing: release.Timing | None = None
    """The scale-down window and burst hold this decision used, when they follow the measured
    replica start (`Policy.release`)."""
    objective: ObjectiveProposal | None = None
    """What the latency objective asked for, when the policy has one and the decision read it
    (not at zero, where there are no answers to read)."""

    def objective_status(self) -> dict[str, float] | None:
        """`status.objective` (`EndpointStatus.objective`): the percentile this decision read
        and the limit its state keeps (which a decision at zero, with no proposal, still
        holds); None without an objective."""
        learned = self.state.objective_load
        if self.objective is None and learned is None:
            return None
        status: dict[str, float] = {}
        if self.objective is not None and self.objective.observed is not None:
            status["observedMilliseconds"] = round(self.objective.observed * 1000, 3)
        if learned is not None:
            status["learnedLimit"] = round(learned, 4)
        return status

    @property
    def rescale(self) -> bool:
        return self.desired != self.current

    @property
    def event(self) -> str | None:
        """The SuccessfulRescale event message, when the count changes."""
        if not self.rescale:
            return None
        return f"New size: {self.desired}; reason: {self.rescale_reason}"

    @property
    def current_metrics(self) -> tuple[MetricStatus, ...]:
        """Each metric's current per-replica value, for status.currentMetrics and the TARGETS
        column of `get hpa` (`45%/60%`, `250m/500m`)."""
        return tuple(_metric_status(p) for p in self.proposals if p.valid)

    def step(self, name: str) -> Step | None:
        """The step of that name (bounds, metrics, stabilize, limit, ...), if it ran."""
        return next((step for step in self.reasons if step.name == name), None)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def decide(observation: Observation, policy: Policy, state: State, now: float) -> Decision:
    """One decision. Call it every `policy.sync_period` seconds with a fresh observation and the
    state the previous decision returned (`State()` the first time)."""
    if policy.release is not None:
        state = release.note_starts(state, observation, policy.release)
    timing = release.timing(policy, state)
    decision = _decide(observation, release.applied(policy, timing), state, now)
    return replace(decision, timing=timing)


def _decide(observation: Observation, policy: Policy, state: State, now: float) -> Decision:
    current = observation.current_replicas
    previous = state.samples[-1] if state.samples else None
    sample = Sample.of(observation, now)
    state = zero.note_requests(state.with_sample(sample, policy.history), previous, sample)
    if not state.initialized:
        # The HPA's recordInitialRecommendation: the starting count holds for a full
        # scale-down window, so a restarted controller does not shrink an endpoint at once.
        state = replace(state, initialized=True).with_recommendation(now, current, _keep(policy))
    if current == 0 and policy.min_replicas == 0:
        return _at_zero(observation, policy, state, previous, now)
    if current == 0 and not state.scaled_to_zero:
        return _disabled(current, state)
    if current > policy.max_replicas or current < policy.min_replicas:
        return _to_bounds(current, policy, state, now)
    tolerances = Tolerances(policy.scale_down.tolerance, policy.scale_up.tolerance)
    proposals = tuple(
        propose(goal, observation, policy, state.samples, now, tolerances)
        for goal in policy.metrics
    )
    chosen = _largest(proposals)
    invalid = [p for p in proposals if not p.valid]
    if chosen is None or (invalid and (chosen.replicas or 0) < current):
        return _not_computed(current, state, proposals, invalid)
    return _normalize(observation, chosen, proposals, policy, state, now)


@dataclass(frozen=True)
class _Aim:
    """What a decision aims at before stabilization: the count, what the stabilization windows
    remember of it (and whether burst mode set it), a floor (burst mode never scales down, and
    nothing scales below what the short window asks for), and the steps that set it."""

    proposed: int
    record: int
    burst: bool
    floor: int
    reason: str
    steps: tuple[Step, ...]
    scale_up: DirectionRules
    state: State
    objective: ObjectiveProposal | None = None
    """What the latency objective asked for, when the policy has one."""


def _normalize(
    observation: Observation,
    chosen: Proposal,
    proposals: tuple[Proposal, ...],
    policy: Policy,
    state: State,
    now: float,
) -> Decision:
    """Raise the metrics' proposal for a burst or a forecast, stabilize and rate-limit it, and
    record what was decided."""
    current = observation.current_replicas
    aim = _aim(observation, chosen, policy, state, now)
    state = aim.state
    stable = stabilize(
        state.recommendations,
        aim.proposed,
        current,
        now,
        aim.scale_up,
        policy.scale_down,
        policy.burst.hold if policy.burst else 0.0,
    )
    state = state.with_recommendation(now, aim.record, _keep(policy), aim.burst)
    limited = limit_rate(
        stable.replicas,
        current,
        policy.min_replicas,
        policy.max_replicas,
        state.scale_up_events,
        state.scale_down_events,
        aim.scale_up,
        policy.scale_down,
        now,
    )
    steps = [*aim.steps, stable, limited]
    desired = max(limited.replicas, min(aim.floor, policy.max_replicas))
    if desired > limited.replicas and not aim.burst and policy.burst is not None:
        steps.append(
            Step(
                "short window",
                desired,
                "ShortWindowDemand",
                f"the last {policy.burst.window:g} s asks for {aim.floor} replicas",
            )
        )
    reason = "All metrics below target" if aim.proposed < current else aim.reason
    if policy.min_replicas == 0:
        desired, reason, steps, state = _toward_zero(desired, reason, steps, policy, state, now)
    state = _record_scale(state, now, current, desired, policy)
    conditions = (
        _condition("AbleToScale", "True", stable.reason, stable.message),
        _condition(
            "ScalingActive",
            "True",
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from "
            f"{chosen.goal.description}",
        ),
        _condition(
            "ScalingLimited",
            "False" if limited.replicas == stable.replicas else "True",
            limited.reason,
            limited.message,
        ),
        *_zero_condition(policy, desired),
        *_objective_condition(aim.objective),
    )
    rescale = reason if desired != current else ""
    return Decision(
        desired, current, tuple(steps), state, conditions, proposals, rescale,
        objective=aim.objective,
    )  # fmt: skip


_OBJECTIVE_STATUS: dict[ObjectiveReason, ConditionStatus] = {
    ObjectiveReason.NO_DATA: "Unknown",
    ObjectiveReason.MET: "True",
    ObjectiveReason.MISSED: "False",
    ObjectiveReason.MISSED_WHILE_STARTING: "False",
    ObjectiveReason.UNMEETABLE_AT_MAX: "False",
}


def _objective_condition(objective: ObjectiveProposal | None) -> tuple[Condition, ...]:
    """ObjectiveMet: True within the objective, False over it (reason
    ObjectiveUnmeetableAtMaxReplicas when more replicas are not allowed), Unknown without
    enough answers to tell."""
    if objective is None:
        return ()
    status = _OBJECTIVE_STATUS[objective.reason]
    return (_condition("ObjectiveMet", status, objective.reason.value, objective.message),)


def _objective_step(
    observation: Observation, policy: Policy, state: State, now: float
) -> tuple[ObjectiveProposal | None, State]:
    """The latency objective over the stable window's answers, against the ready replicas and
    the requests in flight; the state keeps the load it learned."""
    if policy.objective is None:
        # Nothing learned for an objective that left the spec carries over to a new one.
        return None, replace(
            state,
            objective_load=None,
            objective_lowered_at=None,
            objective_misses=(),
            objective_not_lowered=None,
        )
    window, slack = policy.metric_window, policy.sync_period / 2
    found = latency_window(state.samples, window, slack, MIN_ANSWERS)
    counts, since = found if found is not None else ((), now)
    ready = [r for r in observation.replicas if r.ready and not r.terminating]
    in_flight = concurrency(state.samples, window, slack)
    # Lower the learned load only on answers given after the replicas the last lowering asked
    # for have started: until then the slow answers that lowered it would lower it again (at
    # a low rate the window reaches back tens of seconds for enough answers).
    start = max(state.start_times, default=0.0)
    last_lowered = state.objective_lowered_at
    may_lower = last_lowered is None or since >= last_lowered + start
    proposal = propose_for_objective(
        counts,
        LATENCY_BOUNDS,
        policy.objective.percentile,
        policy.objective.latency,
        len(ready) or observation.current_replicas,
        policy.max_replicas,
        in_flight.value if in_flight is not None else None,
        state.objective_load,
        may_lower,
    )
    starting = sum(1 for r in observation.replicas if not r.ready and not r.terminating)
    if starting and proposal.reason is ObjectiveReason.MISSED:
        # Say what the wait is: a miss while replicas start is what slow starts cost, and
        # no count the step asks for can shorten it.
        took = f", which take about {start:.2g} s to start" if start else ""
        waiting = (
            f"; {starting} replica{'s' if starting > 1 else ''} still starting{took}: the "
            "traffic rose faster than replicas start (more minReplicas, or faster starts, "
            "would hold it)"
        )
        proposal = replace(
            proposal,
            reason=ObjectiveReason.MISSED_WHILE_STARTING,
            message=proposal.message + waiting,
        )
    finding = state.objective_not_lowered
    if proposal.reason in (ObjectiveReason.MET, ObjectiveReason.NO_DATA):
        finding = None
    elif (
        proposal.acted and not starting and in_flight is not None and proposal.observed is not None
    ):
        # Compared with the misses at fewer replicas: when taking load off each replica did
        # not lower the latency, the messages say so until a comparison shows it did, or the
        # objective is met.
        count = len(ready) or observation.current_replicas
        arriving = arrival_rate(state.samples, window, slack)
        missed = MissedWindow(
            now,
            count,
            in_flight.value / count,
            proposal.observed,
            arriving.value if arriving is not None else 0.0,
        )
        compared = compare_with_fewer(state.objective_misses, missed)
        if compared is not None:
            earlier, fell = compared
            finding = None if fell else (earlier, missed)
        state = replace(state, objective_misses=note_miss(state.objective_misses, missed))
    if finding is not None and proposal.reason is not ObjectiveReason.MISSED_WHILE_STARTING:
        said = not_lowered_message(*finding, policy.objective.percentile, window)
        proposal = replace(proposal, message=proposal.message + said)
    state = replace(state, objective_not_lowered=finding)
    if proposal.learned != state.objective_load:
        previous = state.objective_load
        lowered = previous is None or (proposal.learned or 0.0) < previous
        state = replace(
            state,
            objective_load=proposal.learned,
            objective_lowered_at=now if lowered else last_lowered,
        )
    return proposal, state


def _aim(
    observation: Observation, chosen: Proposal, policy: Policy, state: State, now: float
) -> _Aim:
    """The metrics' proposal, raised by burst mode or a forecast when they ask for more."""
    proposed = record = chosen.replicas or 0
    floor = 0
    in_burst = False
    steps = [Step("metrics", proposed, chosen.reason, _proposal_message(chosen))]
    reason = f"{chosen.goal.description} above target"
    demand = estimate(observation, policy, state.samples)
    scale_up = policy.scale_up
    if policy.burst is not None:
        burst = bursts.assess(observation, policy, policy.burst, state, demand, now)
        state = burst.state
        if burst.active:
            in_burst = True
            floor = observation.current_replicas
            # Remember what the surge needs, from the short window: the queue it left needs
            # capacity only now, and the stable window still shows the replicas saturated.
            record = burst.sustained if burst.sustained is not None else proposed
            if (burst.replicas or 0) > proposed:
                proposed = burst.replicas or 0
                reason = f"burst: the last {policy.burst.window:g} s asks for {proposed}"
            message = burst.message(policy.burst, policy.metric_window, now)
            steps.append(Step("burst", proposed, "BurstMode", message))
            scale_up = _unlimited(scale_up)
        elif burst.sustained is not None and burst.significant:
            # The stable window lags a surge by its length: never scale down below what the
            # short window asks for right now (when it saw enough requests to say).
            floor = min(observation.current_replicas, burst.sustained)
    if policy.forecast is not None:
        forecast = forecast_replicas(state.samples, policy, policy.forecast, demand)
        if forecast is not None and forecast[0] > proposed:
            proposed = record = max(record, forecast[0])
            reason = (
                f"predicted load: {forecast[1]:.3g} requests/s in {policy.forecast.horizon:g} s"
            )
            steps.append(Step("forecast", proposed, "PredictedLoad", reason))
    objective, state = _objective_step(observation, policy, state, now)
    if objective is not None:
        if objective.replicas is not None and objective.replicas > proposed:
            proposed = objective.replicas
            # In burst mode the requests in flight are the surge's queue, which the replicas
            # asked for drain; the windows remember what the surge itself needs.
            record = record if in_burst else proposed
            reason = objective.message
        steps.append(Step("objective", proposed, objective.reason.value, objective.message))
    return _Aim(proposed, record, in_burst, floor, reason, tuple(steps), scale_up, state, objective)


def _unlimited(rules: DirectionRules) -> DirectionRules:
    """Burst mode scales up at once: no rate policies, though Disabled still means never."""
    if rules.select_policy == "Disabled":
        return rules
    return replace(rules, policies=(), stabilization_window=0.0)


def _toward_zero(
    desired: int, reason: str, steps: list[Step], policy: Policy, state: State, now: float
) -> tuple[int, str, list[Step], State]:
    """With minReplicas 0: zero once idle, and never zero while requests are recent."""
    if zero.idle(state, policy, now):
        step = Step("zero", 0, "IdleScaleToZero", zero.idle_message(policy))
        state = replace(state, scaled_to_zero=True).with_recommendation(now, 0, _keep(policy))
        return 0, f"idle for {policy.zero.idle_period:g} s", [*steps, step], state
    if desired == 0:
        message = "requests arrived within the idle period: keeping one replica"
        return 1, reason, [*steps, Step("zero", 1, "KeepOneWhileActive", message)], state
    return desired, reason, steps, state


def _at_zero(
    observation: Observation,
    policy: Policy,
    state: State,
    previous: Sample | None,
    now: float,
) -> Decision:
    """At zero replicas with minReplicas 0: start replicas at once when a request comes."""
    if not zero.requested(previous, state.samples[-1]):
        step = Step("zero", 0, "ScaledToZero", zero.idle_message(policy))
        conditions = (
            _condition("ScalingActive", "True", "ScaledToZero", step.message),
            *_zero_condition(policy, 0),
        )
        return Decision(0, 0, (step,), replace(state, scaled_to_zero=True), conditions)
    desired = min(policy.max_replicas, max(1, _from_zero_count(observation, policy, state)))
    message = f"requests arrived at zero replicas: starting {desired} at once"
    step = Step("zero", desired, "ScaleFromZero", message)
    state = replace(state, scaled_to_zero=False).with_recommendation(now, desired, _keep(policy))
    state = _record_scale(state, now, 0, desired, policy)
    conditions = (
        _condition("AbleToScale", "True", "SucceededGetScale", message),
        _condition("ScalingActive", "True", "ScaleFromZero", message),
        *_zero_condition(policy, desired),
    )
    reason = "request arrived while scaled to zero"
    return Decision(desired, 0, (step,), state, conditions, (), reason)


def _from_zero_count(observation: Observation, policy: Policy, state: State) -> int:
    """What the request metrics ask for with no replica yet: total demand over the target."""
    latest = state.samples[-1]
    counts = [1]
    for goal in policy.metrics:
        total: float | None = None
        if goal.name == "concurrency":
            total = latest.in_flight
        elif goal.name == "requests_per_second":
            rate = arrival_rate(state.samples, policy.metric_window, policy.sync_period / 2)
            total = rate.value if rate else None
        if total is not None:
            proposal = traffic_proposal(goal, total, 0, Tolerances(0.0, 0.0))
            counts.append(proposal.replicas or 0)
    return max(counts)


def _zero_condition(policy: Policy, desired: int) -> tuple[Condition, ...]:
    if policy.min_replicas != 0:
        return ()
    if desired == 0:
        return (_condition("ScaledToZero", "True", "ScaledToZero", zero.idle_message(policy)),)
    return (
        _condition(
            "ScaledToZero", "False", "NotScaledToZero", "requests arrived within the idle period"
        ),
    )


def _largest(proposals: Sequence[Proposal]) -> Proposal | None:
    """computeReplicasForMetrics: the first valid proposal, replaced by any larger one."""
    chosen: Proposal | None = None
    for proposal in proposals:
        if proposal.replicas is None:
            continue
        if chosen is None or proposal.replicas > (chosen.replicas or 0):
            chosen = proposal
    return chosen


def _proposal_message(proposal: Proposal) -> str:
    goal = proposal.goal
    if proposal.utilization is not None:
        usage = f"{proposal.utilization}% of request against a target of {goal.target:g}%"
    elif proposal.average is not None:
        usage = f"{proposal.average:.3g} per replica against a target of {goal.target:g}"
    else:
        usage = "no current value"
    return f"{goal.description}: {usage}; {proposal.message}"


def _disabled(current: int, state: State) -> Decision:
    step = Step(
        "bounds",
        current,
        "ScalingDisabled",
        "scaling is disabled since the replica count of the target is zero",
    )
    conditions = (
        _condition(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        ),
        _condition("ScalingActive", "False", step.reason, step.message),
    )
    return Decision(current, current, (step,), state, conditions)


def _to_bounds(current: int, policy: Policy, state: State, now: float) -> Decision:
    if current > policy.max_replicas:
        desired, reason = policy.max_replicas, "TooManyReplicas"
        why = "Current number of replicas above Spec.MaxReplicas"
        message = "the desired replica count is more than the maximum replica count"
    else:
        desired, reason = policy.min_replicas, "TooFewReplicas"
        why = "Current number of replicas below Spec.MinReplicas"
        message = "the desired replica count is less than the minimum replica count"
    state = _record_scale(state, now, current, desired, policy)
    conditions = (
        _condition(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        ),
        _condition("ScalingLimited", "True", reason, message),
    )
    step = Step("bounds", desired, reason, message)
    return Decision(desired, current, (step,), state, conditions, (), why)


def _not_computed(
    current: int, state: State, proposals: tuple[Proposal, ...], invalid: Sequence[Proposal]
) -> Decision:
    first = invalid[0] if invalid else None
    reason = first.reason if first else "FailedGetResourceMetric"
    detail = first.message if first else "no metrics to scale on"
    message = f"the HPA was unable to compute the replica count: {detail}"
    step = Step("metrics", current, reason, message)
    conditions = (_condition("ScalingActive", "False", reason, message),)
    return Decision(current, current, (step,), state, conditions, proposals)


def _record_scale(state: State, now: float, before: int, after: int, policy: Policy) -> State:
    return state.with_scale_event(
        now, before, after, policy.scale_up.longest_period, policy.scale_down.longest_period
    )


def _keep(policy: Policy) -> float:
    """Recommendations older than both stabilization windows and the burst hold never matter
    again."""
    hold = policy.burst.hold if policy.burst else 0.0
    return max(policy.scale_up.stabilization_window, policy.scale_down.stabilization_window, hold)


def _condition(type_: str, status: ConditionStatus, reason: str, message: str) -> Condition:
    return Condition(type=type_, status=status, reason=reason, message=message)


def _metric_status(proposal: Proposal) -> MetricStatus:
    if proposal.utilization is not None:
        return MetricStatus(name=proposal.goal.name, average_utilization=proposal.utilization)
    average = proposal.average or 0.0
    if proposal.goal.name == "memory":
        text = canonical(Decimal(round(average)))
    else:  # cores, requests, requests per second: whole milli-units, as Kubernetes shows them
        text = canonical(Decimal(round(average * 1000)) / 1000)
    return MetricStatus(name=proposal.goal.name, average_value=text)
