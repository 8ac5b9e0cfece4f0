"""Which endpoint a request is for: by path prefix, by Host header, or by the model's own path.

Pure: a `RouteTable` maps the routes the controller declared to whatever the gateway keeps per
endpoint, and `resolve` turns a request target and Host header into that value and the target
to forward, or into a message saying what is known instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote

DEFAULT_NAMESPACE = "default"
ENDPOINTS_PREFIX = b"/endpoints/"
MODEL_PREFIXES = (b"/v2/models/", b"/v1/models/")


@dataclass(frozen=True)
class Upstream:
    """One ready replica of an endpoint."""

    name: str
    """The replica's pod name; what `in_flight` and drains refer to."""

    address: str
    """Where it listens: `127.0.0.1:PORT`, `[::1]:PORT`, or `unix:/path/to.sock`."""


@dataclass(frozen=True)
class Route:
    """An endpoint the gateway serves, and the model it serves (for model-path routing)."""

    namespace: str
    endpoint: str
    model_name: str
    model_version: str
    hold_timeout: float | None = None
    """Seconds a request waits at zero replicas before a 503 (the endpoint's
    `scaleToZero.holdTimeoutSeconds`); None takes the gateway's `hold_timeout`."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.endpoint)


TCPAddress = tuple[str, int]
UnixAddress = str


def parse_address(address: str) -> TCPAddress | UnixAddress:
    """`host:port` as a (host, port) pair, or `unix:/path` as the path."""
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path:
            raise ValueError(f"upstream address {address!r} has no socket path after unix:")
        return path
    host, colon, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"upstream address {address!r} is not HOST:PORT (e.g. 127.0.0.1:9000) "
            "or unix:/path/to.sock"
        )
    return (host, int(port))


V = TypeVar("V")


@dataclass(frozen=True)
class Match(Generic[V]):
    """The endpoint a request is for, and the target to send its replica."""

    value: V
    target: bytes


@dataclass(frozen=True)
class Miss:
    """No endpoint: `message` says what was asked and what is known."""

    message: str


class RouteTable(Generic[V]):
    """Routes by (namespace, endpoint), with indexes by endpoint name and by model name."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[Route, V]] = {}
        self._by_name: dict[bytes, list[tuple[str, str]]] = {}
        self._by_model: dict[str, list[tuple[str, str]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[Route, V]]:
        return iter(list(self._entries.values()))

    def get(self, namespace: str, endpoint: str) -> V | None:
        entry = self._entries.get((namespace, endpoint))
        return entry[1] if entry else None

    def route(self, namespace: str, endpoint: str) -> Route | None:
        entry = self._entries.get((namespace, endpoint))
        return entry[0] if entry else None

    def put(self, route: Route, value: V) -> None:
        self._entries[route.key] = (route, value)
        self._reindex()

    def remove(self, namespace: str, endpoint: str) -> V | None:
        entry = self._entries.pop((namespace, endpoint), None)
        self._reindex()
        return entry[1] if entry else None

    def _reindex(self) -> None:
        self._by_name = {}
        self._by_model = {}
        for key, (route, _) in sorted(self._entries.items()):
            self._by_name.setdefault(route.endpoint.encode(), []).append(key)
            self._by_model.setdefault(route.model_name, []).append(key)

    def resolve(self, target: bytes, host: bytes) -> Match[V] | Miss:
        """The endpoint for a request: path prefix first, then Host, then the model's path."""
        if target.startswith(ENDPOINTS_PREFIX):
            return self._by_prefix(target)
        if host:
            value = self._by_host(host)
            if value is not None:
                return Match(value, target)
        if target.startswith(MODEL_PREFIXES):
            return self._by_model_path(target)
        return Miss(
            f"no endpoint matches {_show(target)}: use /endpoints/<name>/v2/..., "
            f"a Host header <name>.<domain>, or /v2/models/<model>/...; {self._known()}"
        )

    def _by_prefix(self, target: bytes) -> Match[V] | Miss:
        rest = target[len(ENDPOINTS_PREFIX) :]
        cut = _first_of(rest, b"/?")
        name, forwarded = rest[:cut], rest[cut:]
        if not forwarded.startswith(b"/"):
            forwarded = b"/" + forwarded
        keys = self._by_name.get(name, [])
        key = _one(keys)
        if key is None:
            shown = name.decode("latin-1")
            if keys:
                spaces = ", ".join(namespace for namespace, _ in keys)
                return Miss(
                    f"endpoint {shown!r} exists in namespaces {spaces}: "
                    f"use a Host header {shown}.<namespace>.<domain>"
                )
            return Miss(f"no endpoint named {shown!r}; {self._known()}")
        return Match(self._entries[key][1], forwarded)

    def _by_host(self, host: bytes) -> V | None:
        if host.startswith(b"["):
            return None  # an IPv6 literal names no endpoint
        labels = host.partition(b":")[0].lower().split(b".")
        keys = self._by_name.get(labels[0])
        if not keys:
            return None
        if len(labels) > 1:
            namespace = labels[1].decode("latin-1")
            for key in keys:
                if key[0] == namespace:
                    return self._entries[key][1]
        only = _one(keys)
        return self._entries[only][1] if only else None

    def _by_model_path(self, target: bytes) -> Match[V] | Miss:
        v2 = target.startswith(b"/v2/")
        rest = target[len(MODEL_PREFIXES[0]) :]
        cut = _first_of(rest, b"/?" if v2 else b"/?:")
        model = _text(rest[:cut])
        keys = self._by_model.get(model, [])
        version_prefix = b"/versions/"
        if len(keys) > 1 and v2 and rest[cut:].startswith(version_prefix):
            tail = rest[cut + len(version_prefix) :]
            version = _text(tail[: _first_of(tail, b"/?")])
            keys = [k for k in keys if self._entries[k][0].model_version == version] or keys
        if len(keys) == 1:
            return Match(self._entries[keys[0]][1], target)
        if keys:
            names = ", ".join(endpoint for _, endpoint in keys)
            return Miss(
                f"model {model!r} is served by endpoints {names}: "
                "use /endpoints/<name>/... to pick one"
            )
        return Miss(f"no endpoint serves model {model!r}; {self._known()}")

    def _known(self) -> str:
        if not self._entries:
            return "no endpoints are being served"
        names = ", ".join(
            endpoint if namespace == DEFAULT_NAMESPACE else f"{namespace}/{endpoint}"
            for namespace, endpoint in sorted(self._entries)
        )
        return f"known endpoints: {names}"


def _one(keys: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The only key, or the one in the default namespace when a name is in several."""
    if len(keys) == 1:
        return keys[0]
    for key in keys:
        if key[0] == DEFAULT_NAMESPACE:
            return key
    return None


def _first_of(data: bytes, stops: bytes) -> int:
    cut = len(data)
    for stop in stops:
        index = data.find(stop)
        if 0 <= index < cut:
            cut = index
    return cut


def _text(raw: bytes) -> str:
    text = raw.decode("latin-1")
    return unquote(text) if "%" in text else text


def _show(target: bytes) -> str:
    return target.partition(b"?")[0][:200].decode("latin-1")
