"""The state store: objects with generation and resourceVersion, status, events, changes.

`Store` is the protocol the API and the controller use; `SqliteStore` implements it on a
SQLite file (or `":memory:"`, the in-memory twin unit tests use, with identical semantics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ebbtide.store.records import (
    Applied,
    ApplyResult,
    Change,
    ChangeType,
    Event,
    ObjectKey,
    Record,
    Selector,
    Write,
    rfc3339,
)
from ebbtide.store.sqlite import SqliteStore


class Store(Protocol):
    """What a state store offers. Every write is atomic; stale versions are conflicts."""

    def apply(self, writes: Sequence[Write], dry_run: bool = False) -> list[Applied]: ...

    def get(self, key: ObjectKey) -> Record: ...

    def list_objects(
        self, kind: str, namespace: str | None = None, selector: Selector | None = None
    ) -> list[Record]: ...

    def update_status(
        self, key: ObjectKey, status: dict[str, Any], expected_version: int | None = None
    ) -> Record: ...

    def delete(self, key: ObjectKey, expected_version: int | None = None) -> Record: ...

    def record_event(
        self, involved: ObjectKey, type: str, reason: str, message: str, component: str = ...
    ) -> None: ...

    def events(self, namespace: str, name: str | None = None) -> list[Event]: ...

    def changes_since(self, resource_version: int) -> list[Change]: ...

    def latest_version(self) -> int: ...

    def subscribe(self, listener: Callable[[Change], None]) -> None: ...

    def save_loop_state(self, key: ObjectKey, record: dict[str, Any]) -> None: ...

    def loop_state(self, key: ObjectKey) -> dict[str, Any] | None: ...

    def record_process(self, name: str, role: str, record: dict[str, Any]) -> None: ...

    def forget_process(self, name: str) -> None: ...

    def processes(self, role: str | None = None) -> dict[str, dict[str, Any]]: ...


__all__ = [
    "Applied",
    "ApplyResult",
    "Change",
    "ChangeType",
    "Event",
    "ObjectKey",
    "Record",
    "Selector",
    "SqliteStore",
    "Store",
    "Write",
    "rfc3339",
]
