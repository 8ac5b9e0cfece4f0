"""What every replica of an endpoint is started from, as a Deployment's pod template."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path

from ebbtide.spec import InferenceEndpoint
from ebbtide.spec.quantity import parse_quantity
from ebbtide.supervisor.naming import template_hash


@dataclass(frozen=True)
class ReplicaTemplate:
    """The model to serve and the resources to serve it with."""

    namespace: str
    endpoint: str
    model_name: str
    model_version: str
    repository: Path
    model_uri: str | None = None
    model_format: str | None = None
    cpu_request: Decimal | None = None
    cpu_limit: Decimal | None = None
    memory_limit: int | None = None
    max_batch_size: int | None = None
    max_batch_latency_ms: float | None = None

    @classmethod
    def of(cls, endpoint: InferenceEndpoint, repository: Path) -> ReplicaTemplate:
        spec = endpoint.spec
        limits = spec.resources.limits
        batching = spec.batching
        return cls(
            namespace=endpoint.namespace,
            endpoint=endpoint.name,
            model_name=spec.model.name,
            model_version=spec.model.version,
            repository=repository,
            model_uri=spec.model.uri,
            model_format=spec.model.format,
            cpu_request=endpoint.cpu_request(),
            cpu_limit=None if limits.cpu is None else parse_quantity(limits.cpu),
            memory_limit=None if limits.memory is None else int(parse_quantity(limits.memory)),
            max_batch_size=batching.max_batch_size if batching else None,
            max_batch_latency_ms=batching.max_latency_ms if batching else None,
        )

    @cached_property
    def hash(self) -> str:
        """Changes exactly when replicas must be replaced (a rollout)."""
        parts = dict(vars(self))
        for local_only in ("namespace", "endpoint", "repository"):
            parts.pop(local_only, None)
        return template_hash(parts)
