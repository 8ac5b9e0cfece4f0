"""The store's contract, run against the SQLite file and its in-memory twin alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ebbtide.core.errors import AlreadyExistsError, ConflictError, NotFoundError, SelectorError
from ebbtide.store import ApplyResult, ChangeType, ObjectKey, Selector, SqliteStore, Write
from ebbtide.testing import FakeClock, memory_store

KEY = ObjectKey("InferenceEndpoint", "default", "demo")


def manifest(max_replicas: int = 5, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.example.com/v1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": "demo", "namespace": "default", "labels": labels or {}},
        "spec": {"autoscaling": {"minReplicas": 1, "maxReplicas": max_replicas}},
    }


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore]:
    clock = FakeClock()
    made = (
        SqliteStore(tmp_path / "state.db", clock)
        if request.param == "file"
        else memory_store(clock)
    )
    yield made
    made.close()


def test_apply_creates_then_is_unchanged_then_configured(store: SqliteStore) -> None:
    first = store.apply([Write(KEY, manifest())])[0]
    again = store.apply([Write(KEY, manifest())])[0]
    changed = store.apply([Write(KEY, manifest(max_replicas=7))])[0]
    assert [first.result, again.result, changed.result] == [
        ApplyResult.CREATED,
        ApplyResult.UNCHANGED,
        ApplyResult.CONFIGURED,
    ]
    assert (first.record.generation, changed.record.generation) == (1, 2)
    assert again.record.resource_version == first.record.resource_version
    assert changed.record.resource_version > first.record.resource_version
    assert changed.record.uid == first.record.uid


def test_a_label_change_moves_the_version_but_not_the_generation(store: SqliteStore) -> None:
    store.apply([Write(KEY, manifest())])
    relabelled = store.apply([Write(KEY, manifest(labels={"team": "ml"}))])[0]
    assert relabelled.result is ApplyResult.CONFIGURED
    assert relabelled.record.generation == 1


def test_a_stale_version_is_a_conflict_and_writes_nothing(store: SqliteStore) -> None:
    created = store.apply([Write(KEY, manifest())])[0].record
    store.apply([Write(KEY, manifest(max_replicas=6), created.resource_version)])
    with pytest.raises(ConflictError, match="has been modified"):
        store.apply([Write(KEY, manifest(max_replicas=9), created.resource_version)])
    assert store.get(KEY).manifest["spec"]["autoscaling"]["maxReplicas"] == 6


def test_expected_version_zero_means_create_only(store: SqliteStore) -> None:
    store.apply([Write(KEY, manifest(), 0)])
    with pytest.raises(AlreadyExistsError):
        store.apply([Write(KEY, manifest(max_replicas=2), 0)])


def test_a_failing_write_rolls_back_the_whole_apply(store: SqliteStore) -> None:
    other = ObjectKey("InferenceEndpoint", "default", "other")
    store.apply([Write(KEY, manifest())])
    with pytest.raises(ConflictError):
        store.apply([Write(other, manifest()), Write(KEY, manifest(max_replicas=3), 999)])
    with pytest.raises(NotFoundError):
        store.get(other)


def test_dry_run_reports_without_writing(store: SqliteStore) -> None:
    result = store.apply([Write(KEY, manifest())], dry_run=True)[0]
    assert result.result is ApplyResult.CREATED
    with pytest.raises(NotFoundError):
        store.get(KEY)
    assert store.changes_since(0) == []


def test_status_updates_keep_the_generation(store: SqliteStore) -> None:
    created = store.apply([Write(KEY, manifest())])[0].record
    updated = store.update_status(KEY, {"replicas": 2}, created.resource_version)
    assert updated.status == {"replicas": 2}
    assert updated.generation == 1
    with pytest.raises(ConflictError):
        store.update_status(KEY, {"replicas": 3}, created.resource_version)


def test_list_filters_by_namespace_and_labels(store: SqliteStore) -> None:
    store.apply([Write(KEY, manifest(labels={"app": "demo"}))])
    elsewhere = ObjectKey("InferenceEndpoint", "prod", "demo")
    store.apply([Write(elsewhere, manifest(labels={"app": "other"}))])
    kind = KEY.kind
    assert [r.key for r in store.list_objects(kind)] == [KEY, elsewhere]
    assert [r.key for r in store.list_objects(kind, "prod")] == [elsewhere]
    assert [r.key for r in store.list_objects(kind, None, Selector.parse("app=demo"))] == [KEY]
    assert [r.key for r in store.list_objects(kind, None, Selector.parse("app!=demo"))] == [
        elsewhere
    ]


def test_selector_errors_name_the_expected_form() -> None:
    with pytest.raises(SelectorError, match="key=value"):
        Selector.parse("app")


def test_changes_replay_every_write_in_order(store: SqliteStore) -> None:
    seen: list[ChangeType] = []
    store.subscribe(lambda change: seen.append(change.type))
    store.apply([Write(KEY, manifest())])
    store.update_status(KEY, {"replicas": 1})
    store.delete(KEY)
    replay = store.changes_since(0)
    assert [c.type for c in replay] == [ChangeType.ADDED, ChangeType.MODIFIED, ChangeType.DELETED]
    assert seen == [c.type for c in replay]
    assert store.changes_since(replay[1].resource_version) == replay[2:]
    assert store.latest_version() == replay[-1].resource_version


def test_identical_events_are_counted_not_repeated(store: SqliteStore) -> None:
    clock = FakeClock()
    counted = memory_store(clock)
    counted.record_event(KEY, "Normal", "SuccessfulRescale", "New size: 2")
    clock.advance(30)
    counted.record_event(KEY, "Normal", "SuccessfulRescale", "New size: 2")
    counted.record_event(KEY, "Warning", "FailedScale", "no model")
    events = counted.events("default", "demo")
    assert [(e.reason, e.count) for e in events] == [("SuccessfulRescale", 2), ("FailedScale", 1)]
    assert (events[0].last_timestamp - events[0].first_timestamp).total_seconds() == 30
    assert counted.events("default", "someone-else") == []


def test_concurrent_writers_get_one_winner_and_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    setup = SqliteStore(path)
    base = setup.apply([Write(KEY, manifest())])[0].record.resource_version
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def writer(replicas: int) -> None:
        own = SqliteStore(path)  # a connection of its own, as another process would have
        barrier.wait()
        try:
            own.apply([Write(KEY, manifest(max_replicas=replicas), base)])
            outcomes.append(f"won {replicas}")
        except ConflictError:
            outcomes.append("conflict")
        finally:
            own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in (6, 7, 8, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1
    assert outcomes.count("conflict") == 3
    stored = setup.get(KEY).manifest["spec"]["autoscaling"]["maxReplicas"]
    assert winners == [f"won {stored}"]
    setup.close()
