"""What the store holds: objects with Kubernetes' bookkeeping, events, and the change feed.

Objects are kept as the plain manifests the API speaks (camelCase dicts), so the store needs
no knowledge of any kind's schema: validation happens before a write, in `ebbtide.spec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ebbtide.core.errors import SelectorError


class ApplyResult(StrEnum):
    """What an apply did, in the words `kubectl apply` prints."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


class ChangeType(StrEnum):
    """The watch event types of the Kubernetes API."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class ObjectKey:
    """Identifies one object."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Record:
    """One stored object and its bookkeeping.

    `generation` counts changes of the desired state (`spec`, labels, annotations) and is what
    a controller reports as `observedGeneration`; `resource_version` changes on every write,
    status included, and is what optimistic concurrency compares.
    """

    key: ObjectKey
    uid: str
    generation: int
    resource_version: int
    manifest: dict[str, Any]
    status: dict[str, Any]
    created: datetime

    def to_object(self) -> dict[str, Any]:
        """The object as the API returns it: manifest, server-set metadata, and status."""
        metadata = dict(self.manifest.get("metadata", {}))
        metadata.update(
            namespace=self.key.namespace,
            uid=self.uid,
            generation=self.generation,
            resourceVersion=str(self.resource_version),
            creationTimestamp=rfc3339(self.created),
        )
        return {**self.manifest, "metadata": metadata, "status": self.status}


@dataclass(frozen=True)
class Event:
    """A Kubernetes-style event: repeats of the same one are counted, not stored again."""

    involved: ObjectKey
    type: str
    reason: str
    message: str
    count: int
    first_timestamp: datetime
    last_timestamp: datetime
    component: str = "ebbtide"

    def to_object(self) -> dict[str, Any]:
        """The event as the API returns it, in core/v1 Event's field names."""
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "involvedObject": {
                "kind": self.involved.kind,
                "namespace": self.involved.namespace,
                "name": self.involved.name,
            },
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "count": self.count,
            "firstTimestamp": rfc3339(self.first_timestamp),
            "lastTimestamp": rfc3339(self.last_timestamp),
            "source": {"component": self.component},
        }


@dataclass(frozen=True)
class Change:
    """One entry of the change feed a watch replays: what happened to which object."""

    resource_version: int
    type: ChangeType
    key: ObjectKey


@dataclass(frozen=True)
class Write:
    """One object to apply. `expected_version` of None means "whatever is there"; 0 means "must
    not exist yet"; any other value must equal the stored resourceVersion (else a conflict)."""

    key: ObjectKey
    manifest: dict[str, Any]
    expected_version: int | None = None


@dataclass(frozen=True)
class Applied:
    """The outcome of one write of an apply."""

    record: Record
    result: ApplyResult


@dataclass(frozen=True)
class Selector:
    """An equality-based label selector (`app=x,tier!=y`), as kubectl's `-l`."""

    equal: Mapping[str, str] = field(default_factory=dict)
    not_equal: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> Selector:
        """Parse `key=value,key!=value`; raise a clear error on anything else."""
        equal: dict[str, str] = {}
        not_equal: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            if "!=" in part:
                key, value = part.split("!=", 1)
                not_equal[key.strip()] = value.strip()
            elif "=" in part:
                key, value = part.split("==" if "==" in part else "=", 1)
                equal[key.strip()] = value.strip()
            else:
                raise SelectorError(
                    f"unable to parse label selector {text!r}: expected key=value or key!=value"
                )
        return cls(equal, not_equal)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.equal.items()) and all(
            labels.get(k) != v for k, v in self.not_equal.items()
        )


def rfc3339(moment: datetime) -> str:
    """A UTC timestamp as Kubernetes writes them: `2026-01-01T12:00:00Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def desired_state(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a manifest whose change bumps the generation."""
    metadata = manifest.get("metadata", {})
    return {
        "spec": manifest.get("spec"),
        "labels": metadata.get("labels") or {},
        "annotations": metadata.get("annotations") or {},
    }
