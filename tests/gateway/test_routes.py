import pytest

from ebbtide.gateway.routes import Match, Miss, Route, RouteTable, parse_address


@pytest.fixture
def table() -> RouteTable[str]:
    routes: RouteTable[str] = RouteTable()
    routes.put(Route("default", "iris", "iris-model", "v1"), "iris")
    routes.put(Route("default", "digits", "digits-model", "v1"), "digits")
    routes.put(Route("default", "shared-a", "shared", "v1"), "shared-a")
    routes.put(Route("default", "shared-b", "shared", "v2"), "shared-b")
    routes.put(Route("team", "iris", "team-iris", "v1"), "team-iris")
    return routes


def test_path_prefix_is_stripped(table: RouteTable[str]) -> None:
    assert table.resolve(b"/endpoints/digits/v2/models/digits-model/infer?x=1", b"") == Match(
        "digits", b"/v2/models/digits-model/infer?x=1"
    )
    assert table.resolve(b"/endpoints/digits/v1/models/m:predict", b"") == Match(
        "digits", b"/v1/models/m:predict"
    )
    assert table.resolve(b"/endpoints/digits", b"") == Match("digits", b"/")
    assert table.resolve(b"/endpoints/digits?q", b"") == Match("digits", b"/?q")


def test_a_name_in_several_namespaces_prefers_default(table: RouteTable[str]) -> None:
    assert table.resolve(b"/endpoints/iris/v2/health/ready", b"") == Match(
        "iris", b"/v2/health/ready"
    )


def test_host_routing_by_name_and_namespace(table: RouteTable[str]) -> None:
    assert table.resolve(b"/v2/health/ready", b"digits") == Match("digits", b"/v2/health/ready")
    assert table.resolve(b"/x", b"digits.example.com:8080") == Match("digits", b"/x")
    assert table.resolve(b"/x", b"iris.team.example.com") == Match("team-iris", b"/x")
    assert table.resolve(b"/x", b"IRIS.default.example.com") == Match("iris", b"/x")


def test_unknown_host_falls_through_to_the_model_path(table: RouteTable[str]) -> None:
    assert table.resolve(b"/v2/models/iris-model/infer", b"localhost:8080") == Match(
        "iris", b"/v2/models/iris-model/infer"
    )
    assert table.resolve(b"/v2/models/iris-model/infer", b"[::1]:8080") == Match(
        "iris", b"/v2/models/iris-model/infer"
    )


def test_model_path_routing_when_the_model_is_unique(table: RouteTable[str]) -> None:
    assert table.resolve(b"/v2/models/digits-model", b"") == Match(
        "digits", b"/v2/models/digits-model"
    )
    assert table.resolve(b"/v1/models/digits-model:predict", b"") == Match(
        "digits", b"/v1/models/digits-model:predict"
    )


def test_a_shared_model_needs_a_version_or_an_endpoint(table: RouteTable[str]) -> None:
    assert table.resolve(b"/v2/models/shared/versions/v2/infer", b"") == Match(
        "shared-b", b"/v2/models/shared/versions/v2/infer"
    )
    miss = table.resolve(b"/v2/models/shared/infer", b"")
    assert isinstance(miss, Miss)
    assert "served by endpoints shared-a, shared-b" in miss.message


def test_misses_name_the_known_endpoints(table: RouteTable[str]) -> None:
    miss = table.resolve(b"/endpoints/nope/v2/x", b"")
    assert isinstance(miss, Miss)
    assert miss.message == (
        "no endpoint named 'nope'; known endpoints: digits, iris, shared-a, shared-b, team/iris"
    )
    other = table.resolve(b"/favicon.ico", b"")
    assert isinstance(other, Miss)
    assert "use /endpoints/<name>/v2/..." in other.message
    assert isinstance(table.resolve(b"/v2/models/nope/infer", b""), Miss)
    assert RouteTable[str]().resolve(b"/x", b"").message.endswith("no endpoints are being served")  # type: ignore[union-attr]


def test_removal_updates_every_index(table: RouteTable[str]) -> None:
    table.remove("default", "digits")
    assert isinstance(table.resolve(b"/v2/models/digits-model/infer", b""), Miss)
    assert isinstance(table.resolve(b"/x", b"digits"), Miss)


def test_addresses() -> None:
    assert parse_address("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address("unix:/tmp/r.sock") == "/tmp/r.sock"
    for bad in ("127.0.0.1", "host:0", "host:http", "unix:", ":80"):
        with pytest.raises(ValueError, match=r"HOST:PORT|socket path"):
            parse_address(bad)
