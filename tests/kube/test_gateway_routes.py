"""The in-cluster gateway's translation from InferenceEndpoints and Endpoints to routes."""

from __future__ import annotations

from typing import Any

from ebbtide.gateway.channel import RouteEntry
from ebbtide.gateway.routes import Route, Upstream
from ebbtide.kube.gateway import Mirror, desired_routes, route_changes, route_of, upstreams_of


def endpoint(name: str = "iris", namespace: str = "ml", **autoscaling: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {"name": "iris-model", "version": "v2"}, "autoscaling": autoscaling},
    }


def addresses(*ready: tuple[str, str], not_ready: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": "iris", "namespace": "ml"},
        "subsets": [
            {
                "addresses": [{"ip": ip, "targetRef": {"name": pod}} for pod, ip in ready],
                "notReadyAddresses": [{"ip": ip} for ip in not_ready],
                "ports": [{"name": "http", "port": 8080}],
            }
        ],
    }


def test_an_endpoint_routes_by_its_model_and_hold_timeout() -> None:
    assert route_of(endpoint(scaleToZero={"holdTimeoutSeconds": 12})) == Route(
        "ml", "iris", "iris-model", "v2", hold_timeout=12.0
    )
    assert route_of(endpoint()) == Route("ml", "iris", "iris-model", "v2")
    assert route_of({"metadata": {"name": "x"}, "spec": {}}) is None


def test_ready_addresses_are_upstreams_and_not_ready_ones_are_not() -> None:
    upstreams = upstreams_of(
        addresses(("b", "10.244.0.7"), ("a", "10.244.0.6"), not_ready=("10.244.0.9",))
    )
    assert upstreams == (Upstream("a", "10.244.0.6:8080"), Upstream("b", "10.244.0.7:8080"))
    assert upstreams_of(None) == ()
    assert upstreams_of(
        {"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 9}]}]}
    ) == (Upstream("fd00::1", "[fd00::1]:9"),)


def test_an_endpoint_without_endpoints_is_routed_with_no_upstream_so_requests_are_held() -> None:
    routes = desired_routes({("ml", "iris"): endpoint()}, {})
    assert routes == {("ml", "iris"): RouteEntry(Route("ml", "iris", "iris-model", "v2"), ())}


def test_endpoints_of_other_services_make_no_route() -> None:
    other = addresses(("p", "10.244.0.1"))
    other["metadata"]["name"] = "kube-dns"
    assert desired_routes({}, {("ml", "kube-dns"): other}) == {}


def test_changes_set_what_differs_and_remove_what_is_gone() -> None:
    one = desired_routes(
        {("ml", "iris"): endpoint()}, {("ml", "iris"): addresses(("a", "10.244.0.6"))}
    )
    two = desired_routes(
        {("ml", "iris"): endpoint()},
        {("ml", "iris"): addresses(("a", "10.244.0.6"), ("b", "10.244.0.7"))},
    )
    assert route_changes(one, one) == ([], [])
    assert route_changes(one, two) == ([two[("ml", "iris")]], [])
    assert route_changes(two, {}) == ([], [("ml", "iris")])


def test_a_mirror_follows_watch_events_and_their_resource_versions() -> None:
    mirror = Mirror()
    mirror.replace({"metadata": {"resourceVersion": "5"}, "items": [endpoint()]})
    assert mirror.resource_version == "5"
    assert list(mirror.objects) == [("ml", "iris")]
    added = endpoint("b")
    added["metadata"]["resourceVersion"] = "7"
    assert mirror.apply({"type": "ADDED", "object": added})
    assert mirror.apply({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    assert mirror.resource_version == "9"
    assert mirror.apply({"type": "DELETED", "object": endpoint()})
    assert list(mirror.objects) == [("ml", "b")]
    assert not mirror.apply({"type": "ERROR", "object": {"code": 410}})
