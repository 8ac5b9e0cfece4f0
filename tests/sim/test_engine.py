"""The discrete-event engine on hand-computed cases, at exact virtual times."""

from __future__ import annotations

import pytest

from ebbtide.sim.engine import DROPPED, TIMED_OUT, Simulation
from ebbtide.sim.platform import Platform
from ebbtide.sim.policies import Fixed
from ebbtide.sim.view import View
from ebbtide.sim.workload import Workload


def run(
    arrivals: list[float],
    work: list[float],
    replicas: int = 1,
    duration: float = 10.0,
    **platform: object,
) -> tuple[float, ...]:
    workload = Workload("hand", tuple(arrivals), tuple(work), duration)
    trace = Simulation(workload, Fixed(replicas), Platform(**platform), replicas).run()  # type: ignore[arg-type]
    return trace.latencies


def test_processor_sharing_splits_the_core() -> None:
    # A alone for 0.5 s, then A and B share: A finishes at 1.5, B alone again until 2.0.
    latencies = run([0.0, 0.5], [1.0, 1.0])
    assert latencies == pytest.approx((1.5, 1.5))


def test_fifo_serves_one_at_a_time() -> None:
    latencies = run([0.0, 0.5], [1.0, 1.0], discipline="fifo")
    assert latencies == pytest.approx((1.0, 1.5))


def test_the_concurrency_cap_queues_at_the_gateway() -> None:
    # Cap 1: B waits in the gateway's queue until A is done, then runs alone.
    latencies = run([0.0, 0.0], [1.0, 1.0], concurrency=1)
    assert latencies == pytest.approx((1.0, 2.0))


def test_a_full_queue_refuses_with_503() -> None:
    latencies = run([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], concurrency=1, queue_capacity=1)
    assert latencies[2] == DROPPED


def test_a_client_gives_up_after_its_timeout() -> None:
    latencies = run([0.0, 0.0], [5.0, 1.0], concurrency=1, timeout=3.0)
    assert latencies == (TIMED_OUT, TIMED_OUT)


def test_requests_spread_over_replicas() -> None:
    latencies = run([0.0, 0.0], [1.0, 1.0], replicas=2)
    assert latencies == pytest.approx((1.0, 1.0))


class StepUp:
    """One replica, then three from t=1."""

    name = "step-up"
    sync_period = 1.0

    def decide(self, view: View, now: float) -> int:
        return 1 if now < 1 else 3


def test_new_replicas_serve_after_the_start_time_and_cost_from_the_decision() -> None:
    workload = Workload("hand", (0.0, 0.0, 0.0, 1.6), (3.0, 3.0, 3.0, 0.5), 4.0)
    trace = Simulation(workload, StepUp(), Platform(start_time=0.5), 1).run()
    # The three early requests were admitted to the first replica (cap 4) and share it; the
    # late one finds the two new replicas ready since t=1.5 and runs alone on one of them.
    assert trace.latencies[3] == pytest.approx(0.5)
    assert trace.latencies[0] == pytest.approx(9.0)
    # One replica for the whole run, two more from t=1 to the end.
    assert trace.replica_seconds == pytest.approx(trace.end + 2 * (trace.end - 1.0))
    assert trace.actions == 1


def test_the_same_seed_gives_the_same_run() -> None:
    arrivals = [i * 0.01 for i in range(500)]
    work = [0.02] * 500
    assert run(arrivals, work, replicas=3) == run(arrivals, work, replicas=3)
