"""Admission, queueing and holding at zero, on a fake clock (no sockets)."""

import asyncio
import random
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from ebbtide.core.errors import NotFoundError, NotReadyError, OverloadedError
from ebbtide.gateway.balancing import PowerOfTwoChoices
from ebbtide.gateway.endpoint import EndpointState, UpstreamState
from ebbtide.gateway.routes import Route, Upstream
from ebbtide.gateway.settings import GatewaySettings
from ebbtide.testing import FakeClock

T = TypeVar("T")
ROUTE = Route("default", "iris", "iris", "v1")
A = Upstream("iris-a", "127.0.0.1:9001")
B = Upstream("iris-b", "127.0.0.1:9002")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def endpoint(
    clock: FakeClock, demands: list[float] | None = None, **settings: Any
) -> EndpointState:
    def demand(namespace: str, name: str) -> None:
        assert (namespace, name) == ("default", "iris")
        if demands is not None:
            demands.append(clock.now())

    return EndpointState(
        ROUTE,
        settings=GatewaySettings(**settings),
        strategy=PowerOfTwoChoices(random.Random(1)),
        clock=clock,
        demand=demand,
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_slots_are_limited_per_upstream() -> None:
    state = endpoint(FakeClock(), max_outstanding_per_upstream=2)
    state.set_upstreams([A, B])
    taken = [state.try_acquire() for _ in range(4)]
    assert all(taken)
    assert state.try_acquire() is None
    assert sorted(s.name for s in taken if s) == ["iris-a", "iris-a", "iris-b", "iris-b"]
    assert state.in_flight() == 4
    assert state.in_flight("iris-a") == 2


def test_a_full_queue_refuses_at_once() -> None:
    async def scenario() -> None:
        state = endpoint(FakeClock(), max_outstanding_per_upstream=1, queue_length=2)
        state.set_upstreams([A])
        first = await state.acquire()
        waiting = [asyncio.ensure_future(state.acquire()) for _ in range(2)]
        await settle()
        assert state.queued == 2
        with pytest.raises(OverloadedError, match="2 requests are already waiting"):
            await state.acquire()
        assert state.stats.rejected == 1
        state.release(first)  # the first waiter gets the slot, in order
        await settle()
        assert waiting[0].done()
        assert not waiting[1].done()
        assert waiting[0].result() is first
        state.release(first)
        await settle()
        assert waiting[1].done()

    run(scenario())


def test_queue_timeout_on_the_clock() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        state = endpoint(clock, max_outstanding_per_upstream=1, queue_timeout=2.0)
        state.set_upstreams([A])
        await state.acquire()
        waiting = asyncio.ensure_future(state.acquire())
        await settle()
        clock.advance(1.99)
        state.expire_waiters(clock.now())
        await settle()
        assert not waiting.done()
        clock.advance(0.01)
        state.expire_waiters(clock.now())
        await settle()
        with pytest.raises(OverloadedError, match="no replica was free within 2 s"):
            waiting.result()
        assert state.queued == 0

    run(scenario())


def test_held_at_zero_then_served_when_an_upstream_appears() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        demands: list[float] = []
        state = endpoint(clock, demands, demand_interval=1.0)
        state.set_upstreams([])
        held = [asyncio.ensure_future(state.acquire()) for _ in range(3)]
        await settle()
        assert demands == [0.0]  # asked once, not once per request
        assert state.queued == 3
        clock.advance(1.0)
        state.expire_waiters(clock.now())
        assert demands == [0.0, 1.0]  # asked again while requests still wait
        state.set_upstreams([A])
        await settle()
        assert all(task.done() for task in held)
        assert {task.result().name for task in held} == {"iris-a"}
        assert state.in_flight("iris-a") == 3

    run(scenario())


def test_hold_timeout_at_zero_is_exact_on_the_clock() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        state = endpoint(clock, hold_timeout=5.0)
        state.set_upstreams([])
        held = asyncio.ensure_future(state.acquire())
        await settle()
        clock.advance(4.999)
        state.expire_waiters(clock.now())
        await settle()
        assert not held.done()
        clock.advance(0.001)
        state.expire_waiters(clock.now())
        await settle()
        with pytest.raises(NotReadyError, match="no ready replica: none became ready within 5 s"):
            held.result()
        assert state.stats.rejected == 1

    run(scenario())


def test_a_route_may_hold_for_less_than_the_gateway_default() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        state = EndpointState(
            replace(ROUTE, hold_timeout=0.5),
            settings=GatewaySettings(hold_timeout=30.0),
            strategy=PowerOfTwoChoices(random.Random(1)),
            clock=clock,
            demand=lambda namespace, name: None,
        )
        state.set_upstreams([])
        held = asyncio.ensure_future(state.acquire())
        await settle()
        clock.advance(0.5)
        state.expire_waiters(clock.now())
        await settle()
        with pytest.raises(NotReadyError, match=r"within 0\.5 s"):
            held.result()

    run(scenario())


def test_every_replica_refused_then_a_new_one_serves() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        demands: list[float] = []
        state = endpoint(clock, demands)
        state.set_upstreams([A])
        tried = await state.acquire()
        state.note_connect_failure(tried, "Connection refused")
        state.release(tried)
        retry = asyncio.ensure_future(state.acquire((tried,)))
        await settle()
        assert not retry.done()  # A is free, but it already refused this request
        assert demands == []  # the endpoint has a replica: nothing to scale from zero
        state.set_upstreams([A, B])
        await settle()
        assert retry.result().name == "iris-b"
        assert state.stats.retries == 1

    run(scenario())


def test_refused_everywhere_times_out_naming_the_failures() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        state = endpoint(clock, hold_timeout=1.0)
        state.set_upstreams([A])
        tried = await state.acquire()
        state.note_connect_failure(tried, "Connection refused")
        state.release(tried)
        retry = asyncio.ensure_future(state.acquire((tried,)))
        await settle()
        clock.advance(1.0)
        state.expire_waiters(clock.now())
        await settle()
        with pytest.raises(NotReadyError, match=r"tried iris-a \(Connection refused\)"):
            retry.result()

    run(scenario())


def test_a_replica_that_refused_is_avoided_while_cooling_down() -> None:
    clock = FakeClock()
    state = endpoint(clock, connect_failure_cooldown=1.0)
    state.set_upstreams([A, B])
    refused = next(s for s in state.upstream_states() if s.name == "iris-a")
    state.note_connect_failure(refused, "Connection refused")
    picks = []
    for _ in range(10):
        chosen = state.try_acquire()
        assert chosen is not None
        picks.append(chosen.name)
        state.release(chosen)
    assert set(picks) == {"iris-b"}
    clock.advance(1.0)
    picks = []
    for _ in range(20):
        chosen = state.try_acquire()
        assert chosen is not None
        picks.append(chosen.name)
    assert set(picks) == {"iris-a", "iris-b"}


def test_removed_upstream_gets_nothing_new_and_drains() -> None:
    state = endpoint(FakeClock())
    state.set_upstreams([A])
    on_a = state.try_acquire()
    assert on_a is not None
    state.set_upstreams([B])
    assert not on_a.in_rotation
    assert state.in_flight("iris-a") == 1
    assert state.rotation_size == 1
    for _ in range(5):
        chosen = state.try_acquire()
        assert chosen is not None
        assert chosen.name == "iris-b"
    state.release(on_a)
    assert state.in_flight("iris-a") == 0
    assert [s.name for s in state.upstream_states()] == ["iris-b"]


def test_unchanged_upstreams_keep_their_state() -> None:
    state = endpoint(FakeClock())
    state.set_upstreams([A])
    first: UpstreamState | None = state.try_acquire()
    state.set_upstreams([A, B])
    assert first in state.upstream_states()
    assert state.in_flight("iris-a") == 1


def test_closing_the_route_answers_waiters_404() -> None:
    async def scenario() -> None:
        state = endpoint(FakeClock())
        state.set_upstreams([])
        held = asyncio.ensure_future(state.acquire())
        await settle()
        state.close()
        await settle()
        with pytest.raises(NotFoundError, match="was removed"):
            held.result()

    run(scenario())


def test_a_client_leaving_while_queued_gives_its_slot_on() -> None:
    async def scenario() -> None:
        state = endpoint(FakeClock(), max_outstanding_per_upstream=1)
        state.set_upstreams([A])
        first = await state.acquire()
        leaving = asyncio.ensure_future(state.acquire())
        staying = asyncio.ensure_future(state.acquire())
        await settle()
        leaving.cancel()
        await settle()
        state.release(first)
        await settle()
        assert staying.result() is first
        assert state.queued == 0
        assert state.in_flight() == 1

    run(scenario())
