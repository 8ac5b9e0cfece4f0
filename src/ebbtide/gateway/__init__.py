"""The data plane: one HTTP port through which clients reach every endpoint's replicas.

The controller drives a `Gateway` in-process (same event loop)::

    gateway = Gateway(clock=SYSTEM_CLOCK, rng=random.Random(seed))
    gateway.on_demand = lambda namespace, endpoint: ...   # requests wait at zero replicas
    await gateway.start("127.0.0.1", 8080)
    route = Route("default", "iris", model_name="iris", model_version="v1")
    gateway.set_upstreams(route, [Upstream("iris-abc-x1", "127.0.0.1:9001")])
    gateway.in_flight("default", "iris", "iris-abc-x1")    # 0 once a removed replica drained
    window = gateway.traffic("default", "iris").since(earlier_snapshot)
    await gateway.stop()

See docs/gateway.md for routing, queueing, holding at zero and retries.
"""

from ebbtide.core.latency import LATENCY_BOUNDS
from ebbtide.gateway.balancing import BalancingStrategy, PowerOfTwoChoices
from ebbtide.gateway.gateway import DemandCallback, Gateway
from ebbtide.gateway.routes import Route, Upstream
from ebbtide.gateway.settings import GatewaySettings
from ebbtide.gateway.traffic import TrafficSnapshot, TrafficWindow

__all__ = [
    "LATENCY_BOUNDS",
    "BalancingStrategy",
    "DemandCallback",
    "Gateway",
    "GatewaySettings",
    "PowerOfTwoChoices",
    "Route",
    "TrafficSnapshot",
    "TrafficWindow",
    "Upstream",
]
