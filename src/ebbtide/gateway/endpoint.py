"""One endpoint's replicas, its queue, and who gets the next request.

A request takes a slot on a replica (at most `max_outstanding_per_upstream` each) chosen by
the balancing strategy. With no free slot it waits, first come first served, in a bounded
queue; with no replica at all it is held the same way while `on_demand` asks for one. A
replica taken out of rotation gets no new request, and leaves once its last one is answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from ebbtide.core.clock import Clock
from ebbtide.core.errors import NotFoundError, NotReadyError, OverloadedError
from ebbtide.gateway.balancing import BalancingStrategy
from ebbtide.gateway.routes import Route, Upstream, parse_address
from ebbtide.gateway.settings import GatewaySettings
from ebbtide.gateway.traffic import TrafficSnapshot, TrafficStats
from ebbtide.gateway.upstream import UpstreamPool

log = logging.getLogger("ebbtide.gateway")


class UpstreamState:
    """One replica as the balancer sees it: its load, its connections, whether it is in rotation."""

    __slots__ = ("cooldown_until", "failure", "in_rotation", "outstanding", "pool", "upstream")

    def __init__(self, upstream: Upstream, settings: GatewaySettings) -> None:
        self.upstream = upstream
        self.pool = UpstreamPool(
            parse_address(upstream.address),
            connect_timeout=settings.connect_timeout,
            idle_timeout=settings.pool_idle_timeout,
            max_head_bytes=settings.max_head_bytes,
        )
        self.outstanding = 0
        self.in_rotation = True
        self.cooldown_until = 0.0
        self.failure = ""

    @property
    def name(self) -> str:
        return self.upstream.name


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[UpstreamState]
    exclude: Collection[UpstreamState]
    deadline: float
    timeout_error: Exception = field(repr=False)


class EndpointState:
    """Admission, balancing and the waiting queue of one endpoint."""

    def __init__(
        self,
        route: Route,
        *,
        settings: GatewaySettings,
        strategy: BalancingStrategy,
        clock: Clock,
        demand: Callable[[str, str], None],
    ) -> None:
        self.route = route
        self.stats = TrafficStats(clock.now())
        self._settings = settings
        self._strategy = strategy
        self._clock = clock
        self._demand = demand
        self._limit = settings.max_outstanding_per_upstream
        self._active: list[UpstreamState] = []
        self._draining: list[UpstreamState] = []
        self._waiters: deque[_Waiter] = deque()
        self._queued = 0
        self._in_flight = 0
        self._cooling = False
        self._last_demand = float("-inf")

    # rotation

    def set_upstreams(self, upstreams: Sequence[Upstream]) -> None:
        """Make exactly these replicas the rotation; others drain."""
        wanted = dict.fromkeys(upstreams)
        kept = {state.upstream: state for state in self._active if state.upstream in wanted}
        for state in self._active:
            if state.upstream not in wanted:
                self._take_out(state)
        self._active = [
            kept.get(upstream) or UpstreamState(upstream, self._settings) for upstream in wanted
        ]
        self._dispatch()

    def _take_out(self, state: UpstreamState) -> None:
        state.in_rotation = False
        if state.outstanding:
            self._draining.append(state)
        else:
            state.pool.close()

    def close(self) -> None:
        """The route is gone: waiting requests get 404, replicas drain."""
        for state in self._active:
            self._take_out(state)
        self._active = []
        name = self.route.endpoint
        self.fail_waiters(NotFoundError(f"endpoint {name!r} was removed while the request waited"))

    def fail_waiters(self, error: Exception) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)

    def upstream_states(self) -> list[UpstreamState]:
        return [*self._active, *self._draining]

    # slots

    def try_acquire(self, exclude: Collection[UpstreamState] = ()) -> UpstreamState | None:
        """A slot at once if one is free and nobody is waiting ahead."""
        if self._queued:
            return None
        state = self._pick(exclude)
        if state is not None:
            state.outstanding += 1
            self._in_flight += 1
        return state

    async def acquire(self, exclude: Collection[UpstreamState] = ()) -> UpstreamState:
        """A slot, waiting in the queue if need be; 503-worthy errors when that cannot be."""
        state = self.try_acquire(exclude)
        if state is not None:
            return state
        settings = self._settings
        name = self.route.endpoint
        if self._queued >= settings.queue_length:
            self.stats.rejected += 1
            raise OverloadedError(
                f"endpoint {name!r} is overloaded: all its replicas are busy and "
                f"{self._queued} requests are already waiting"
            )
        now = self._clock.now()
        untried = [state for state in self._active if state not in exclude]
        if untried:
            deadline = now + settings.queue_timeout
            error: Exception = OverloadedError(
                f"endpoint {name!r} is overloaded: no replica was free "
                f"within {settings.queue_timeout:g} s"
            )
        else:
            deadline = now + self.hold_timeout
            error = NotReadyError(self._not_ready_message(exclude))
            if not self._active:
                self._ask_for_replicas(now)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), exclude, deadline, error)
        self._waiters.append(waiter)
        self._queued += 1
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result())  # a slot came just as the client left
            raise
        except (OverloadedError, NotReadyError):
            self.stats.rejected += 1
            raise
        finally:
            self._queued -= 1

    def release(self, state: UpstreamState) -> None:
        """The request on this slot is answered (or given up)."""
        state.outstanding -= 1
        self._in_flight -= 1
        if not state.in_rotation:
            if not state.outstanding and state in self._draining:
                self._draining.remove(state)
                state.pool.close()
            return
        if self._waiters:
            self._dispatch()

    def note_connect_failure(self, state: UpstreamState, reason: str) -> None:
        """Prefer other replicas for a while: this one just refused a connection."""
        state.cooldown_until = self._clock.now() + self._settings.connect_failure_cooldown
        state.failure = reason
        self._cooling = True
        self.stats.retries += 1

    def _pick(self, exclude: Collection[UpstreamState]) -> UpstreamState | None:
        limit = self._limit
        candidates = [
            state for state in self._active if state.outstanding < limit and state not in exclude
        ]
        if not candidates:
            return None
        if self._cooling:
            now = self._clock.now()
            healthy = [state for state in candidates if state.cooldown_until <= now]
            if len(healthy) == len(candidates):
                self._cooling = any(s.cooldown_until > now for s in self._active)
            candidates = healthy or candidates
        return self._strategy.choose(candidates)

    def _has_free_slot(self) -> bool:
        return any(state.outstanding < self._limit for state in self._active)

    def _dispatch(self) -> None:
        """Hand free slots to waiting requests, in order of arrival."""
        waiters = self._waiters
        blocked: list[_Waiter] = []
        while waiters:
            waiter = waiters[0]
            if waiter.future.done():
                waiters.popleft()
                continue
            state = self._pick(waiter.exclude)
            if state is None:
                if not waiter.exclude or not self._has_free_slot():
                    break
                blocked.append(waiters.popleft())  # only replicas it already tried are free
                continue
            waiters.popleft()
            state.outstanding += 1
            self._in_flight += 1
            waiter.future.set_result(state)
        waiters.extendleft(reversed(blocked))

    def expire_waiters(self, now: float) -> None:
        """Answer 503 to requests that waited past their deadline."""
        if not self._waiters:
            return
        kept: deque[_Waiter] = deque()
        for waiter in self._waiters:
            if waiter.future.done():
                continue
            if waiter.deadline <= now:
                waiter.future.set_exception(waiter.timeout_error)
            else:
                kept.append(waiter)
        self._waiters = kept
        if not self._active and kept:
            self._ask_for_replicas(now)

    def _ask_for_replicas(self, now: float) -> None:
        if now - self._last_demand < self._settings.demand_interval:
            return
        self._last_demand = now
        try:
            self._demand(self.route.namespace, self.route.endpoint)
        except Exception:  # a failing callback must not fail the request it is trying to serve
            log.exception("on_demand failed for endpoint %s", self.route.endpoint)

    @property
    def hold_timeout(self) -> float:
        """How long a request waits for a replica at zero: the route's, else the gateway's."""
        if self.route.hold_timeout is not None:
            return self.route.hold_timeout
        return self._settings.hold_timeout

    def _not_ready_message(self, exclude: Collection[UpstreamState]) -> str:
        name = self.route.endpoint
        timeout = self.hold_timeout
        if not exclude:
            return f"endpoint {name!r} has no ready replica: none became ready within {timeout:g} s"
        tried = ", ".join(f"{state.name} ({state.failure})" for state in exclude)
        return (
            f"no replica of endpoint {name!r} accepted a connection within {timeout:g} s "
            f"(tried {tried})"
        )

    # reading

    def in_flight(self, upstream: str | None = None) -> int:
        if upstream is None:
            return self._in_flight
        return sum(s.outstanding for s in self.upstream_states() if s.name == upstream)

    @property
    def rotation_size(self) -> int:
        """Replicas in rotation (draining ones excluded)."""
        return len(self._active)

    @property
    def queued(self) -> int:
        return self._queued

    def snapshot(self, now: float) -> TrafficSnapshot:
        per_upstream: dict[str, int] = {}
        for state in self.upstream_states():
            per_upstream[state.name] = per_upstream.get(state.name, 0) + state.outstanding
        return self.stats.snapshot(
            now, self._in_flight, self._queued, len(self._active), per_upstream
        )
