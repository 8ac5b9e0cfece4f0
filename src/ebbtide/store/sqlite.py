"""The state store on SQLite: objects, status, events and a change feed, in one file.

WAL mode with `synchronous=NORMAL`: a committed write survives a crash of the process (what
`kill -9` of the control plane does); only a power cut may lose the last transactions. Every
write runs in one `BEGIN IMMEDIATE` transaction, so a check of `resourceVersion` and the write
that depends on it cannot interleave with another writer, even one in another process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.errors import AlreadyExistsError, ConflictError, NotFoundError
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
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL, generation INTEGER NOT NULL, resource_version INTEGER NOT NULL,
    manifest TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL, component TEXT NOT NULL,
    count INTEGER NOT NULL, first_timestamp TEXT NOT NULL, last_timestamp TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name, type, reason, message)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (namespace, last_timestamp);
CREATE TABLE IF NOT EXISTS changes (
    resource_version INTEGER PRIMARY KEY,
    type TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS loop_state (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS processes (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, record TEXT NOT NULL
);
INSERT OR IGNORE INTO counters VALUES ('resource_version', 0);
"""

EVENTS_KEPT_PER_OBJECT = 200
"""Older events of one object are dropped, as the Kubernetes API expires them."""

ChangeListener = Callable[[Change], None]


class SqliteStore:
    """The store. Pass a path for a durable file, or `":memory:"` for a private in-memory one."""

    def __init__(self, path: Path | str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = str(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: list[ChangeListener] = []
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).touch(mode=0o600, exist_ok=True)
            os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def subscribe(self, listener: ChangeListener) -> None:
        """Call `listener` after every committed change (in the writer's thread)."""
        self._listeners.append(listener)

    # -- objects ------------------------------------------------------------------------

    def apply(self, writes: Sequence[Write], dry_run: bool = False) -> list[Applied]:
        """Create or update every object, or none: one conflict or error rolls back them all."""
        changes: list[Change] = []
        with self._transaction(rollback=dry_run) as db:
            results = [self._apply_one(db, write, changes) for write in writes]
        if not dry_run:
            self._notify(changes)
        return results

    def get(self, key: ObjectKey) -> Record:
        row = self._db.execute(
            "SELECT * FROM objects WHERE kind=? AND namespace=? AND name=?",
            (key.kind, key.namespace, key.name),
        ).fetchone()
        if row is None:
            raise NotFoundError(f'{key.kind.lower()}s "{key.name}" not found')
        return _record(row)

    def list_objects(
        self, kind: str, namespace: str | None = None, selector: Selector | None = None
    ) -> list[Record]:
        """Objects of a kind, in one namespace or all, filtered by labels, ordered by name."""
        query, parameters = "SELECT * FROM objects WHERE kind=?", [kind]
        if namespace is not None:
            query += " AND namespace=?"
            parameters.append(namespace)
        rows = self._db.execute(query + " ORDER BY namespace, name", parameters).fetchall()
        records = [_record(row) for row in rows]
        if selector is None:
            return records
        return [r for r in records if selector.matches(r.manifest["metadata"].get("labels", {}))]

    def update_status(
        self, key: ObjectKey, status: dict[str, Any], expected_version: int | None = None
    ) -> Record:
        """Replace an object's status; the generation stays, the resourceVersion moves."""
        changes: list[Change] = []
        with self._transaction() as db:
            current = self._current(db, key)
            if current is None:
                raise NotFoundError(f'{key.kind.lower()}s "{key.name}" not found')
            _check_version(key, current, expected_version)
            version = self._next_version(db, ChangeType.MODIFIED, key, changes)
            db.execute(
                "UPDATE objects SET status=?, resource_version=? "
                "WHERE kind=? AND namespace=? AND name=?",
                (json.dumps(status), version, key.kind, key.namespace, key.name),
            )
            updated = self._current(db, key)
        self._notify(changes)
        assert updated is not None
        return updated

    def delete(self, key: ObjectKey, expected_version: int | None = None) -> Record:
        """Remove an object; its events stay until they expire with the object's name reused."""
        changes: list[Change] = []
        with self._transaction() as db:
            current = self._current(db, key)
            if current is None:
                raise NotFoundError(f'{key.kind.lower()}s "{key.name}" not found')
            _check_version(key, current, expected_version)
            self._next_version(db, ChangeType.DELETED, key, changes)
            for table in ("objects", "loop_state"):
                db.execute(
                    f"DELETE FROM {table} WHERE kind=? AND namespace=? AND name=?",
                    (key.kind, key.namespace, key.name),
                )
        self._notify(changes)
        return current

    # -- events and the change feed -----------------------------------------------------

    def record_event(
        self, involved: ObjectKey, type: str, reason: str, message: str, component: str = "ebbtide"
    ) -> None:
        """Add an event, or count one more of an identical event, as Kubernetes aggregates."""
        now = _text(self._clock.wall())
        with self._transaction() as db:
            db.execute(
                "INSERT INTO events VALUES (?,?,?,?,?,?,?,1,?,?) "
                "ON CONFLICT (kind, namespace, name, type, reason, message) "
                "DO UPDATE SET count = count + 1, last_timestamp = excluded.last_timestamp",
                (
                    involved.kind,
                    involved.namespace,
                    involved.name,
                    type,
                    reason,
                    message,
                    component,
                    now,
                    now,
                ),
            )
            db.execute(
                "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events "
                "WHERE kind=? AND namespace=? AND name=? "
                "ORDER BY last_timestamp DESC LIMIT -1 OFFSET ?)",
                (involved.kind, involved.namespace, involved.name, EVENTS_KEPT_PER_OBJECT),
            )

    def events(self, namespace: str, name: str | None = None) -> list[Event]:
        """Events of a namespace, or of one object in it, oldest first."""
        query, parameters = "SELECT * FROM events WHERE namespace=?", [namespace]
        if name is not None:
            query += " AND name=?"
            parameters.append(name)
        rows = self._db.execute(query + " ORDER BY last_timestamp, rowid", parameters)
        return [_event(row) for row in rows.fetchall()]

    def changes_since(self, resource_version: int) -> list[Change]:
        """Every change after `resource_version`, in order: what a watch replays on resume."""
        rows = self._db.execute(
            "SELECT * FROM changes WHERE resource_version > ? ORDER BY resource_version",
            (resource_version,),
        ).fetchall()
        return [
            Change(
                row["resource_version"],
                ChangeType(row["type"]),
                ObjectKey(row["kind"], row["namespace"], row["name"]),
            )
            for row in rows
        ]

    def latest_version(self) -> int:
        row = self._db.execute(
            "SELECT value FROM counters WHERE name='resource_version'"
        ).fetchone()
        return int(row[0])

    # -- processes that outlive the control plane ----------------------------------------

    def record_process(self, name: str, role: str, record: dict[str, Any]) -> None:
        """Remember a running process (a replica, a gateway worker) by name, so a control
        plane that restarts can find it and take it over; replaces an earlier record."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO processes VALUES (?,?,?) "
                "ON CONFLICT (name) DO UPDATE SET role=excluded.role, record=excluded.record",
                (name, role, json.dumps(record)),
            )

    def save_loop_state(self, key: ObjectKey, record: dict[str, Any]) -> None:
        """Keep what an object's control loop remembers (the autoscaler's history), for the
        loop of a control plane that restarts; gone with the object."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO loop_state VALUES (?,?,?,?) ON CONFLICT (kind, namespace, name) "
                "DO UPDATE SET record=excluded.record",
                (key.kind, key.namespace, key.name, json.dumps(record)),
            )

    def loop_state(self, key: ObjectKey) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT record FROM loop_state WHERE kind=? AND namespace=? AND name=?",
            (key.kind, key.namespace, key.name),
        ).fetchone()
        return None if row is None else dict(json.loads(row["record"]))

    def forget_process(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM processes WHERE name=?", (name,))

    def processes(self, role: str | None = None) -> dict[str, dict[str, Any]]:
        """Recorded processes by name, optionally of one role."""
        query, parameters = "SELECT * FROM processes", []
        if role is not None:
            query, parameters = query + " WHERE role=?", [role]
        rows = self._db.execute(query + " ORDER BY name", parameters).fetchall()
        return {row["name"]: json.loads(row["record"]) for row in rows}

    # -- internals ----------------------------------------------------------------------

    @contextmanager
    def _transaction(self, rollback: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("ROLLBACK" if rollback else "COMMIT")

    def _apply_one(self, db: sqlite3.Connection, write: Write, changes: list[Change]) -> Applied:
        key, manifest = write.key, write.manifest
        current = self._current(db, key)
        if current is None:
            if write.expected_version not in (None, 0):
                raise NotFoundError(
                    f'{key.kind.lower()}s "{key.name}" not found: it was deleted since you '
                    "read it; apply again to create it"
                )
            version = self._next_version(db, ChangeType.ADDED, key, changes)
            created = _text(self._clock.wall())
            db.execute(
                "INSERT INTO objects VALUES (?,?,?,?,1,?,?,'{}',?)",
                (
                    key.kind,
                    key.namespace,
                    key.name,
                    str(uuid.uuid4()),
                    version,
                    json.dumps(manifest),
                    created,
                ),
            )
            record = self._current(db, key)
            assert record is not None
            return Applied(record, ApplyResult.CREATED)
        if write.expected_version == 0:
            raise AlreadyExistsError(f'{key.kind.lower()}s "{key.name}" already exists')
        _check_version(key, current, write.expected_version)
        if manifest == current.manifest:
            return Applied(current, ApplyResult.UNCHANGED)
        spec_changed = manifest.get("spec") != current.manifest.get("spec")
        version = self._next_version(db, ChangeType.MODIFIED, key, changes)
        db.execute(
            "UPDATE objects SET manifest=?, generation=?, resource_version=? "
            "WHERE kind=? AND namespace=? AND name=?",
            (
                json.dumps(manifest),
                current.generation + int(spec_changed),
                version,
                key.kind,
                key.namespace,
                key.name,
            ),
        )
        record = self._current(db, key)
        assert record is not None
        return Applied(record, ApplyResult.CONFIGURED)

    def _current(self, db: sqlite3.Connection, key: ObjectKey) -> Record | None:
        row = db.execute(
            "SELECT * FROM objects WHERE kind=? AND namespace=? AND name=?",
            (key.kind, key.namespace, key.name),
        ).fetchone()
        return None if row is None else _record(row)

    def _next_version(
        self, db: sqlite3.Connection, type: ChangeType, key: ObjectKey, changes: list[Change]
    ) -> int:
        row = db.execute(
            "UPDATE counters SET value = value + 1 WHERE name='resource_version' RETURNING value"
        ).fetchone()
        version = int(row[0])
        db.execute(
            "INSERT INTO changes VALUES (?,?,?,?,?)",
            (version, type.value, key.kind, key.namespace, key.name),
        )
        changes.append(Change(version, type, key))
        return version

    def _notify(self, changes: list[Change]) -> None:
        for change in changes:
            for listener in self._listeners:
                listener(change)


def _check_version(key: ObjectKey, current: Record, expected: int | None) -> None:
    if expected is not None and expected != current.resource_version:
        raise ConflictError(
            f'Operation cannot be fulfilled on {key.kind.lower()}s "{key.name}": the object '
            "has been modified; please apply your changes to the latest version and try again"
        )


def _text(moment: datetime) -> str:
    return moment.isoformat()


def _record(row: sqlite3.Row) -> Record:
    return Record(
        key=ObjectKey(row["kind"], row["namespace"], row["name"]),
        uid=row["uid"],
        generation=row["generation"],
        resource_version=row["resource_version"],
        manifest=json.loads(row["manifest"]),
        status=json.loads(row["status"]),
        created=datetime.fromisoformat(row["created"]),
    )


def _event(row: sqlite3.Row) -> Event:
    return Event(
        involved=ObjectKey(row["kind"], row["namespace"], row["name"]),
        type=row["type"],
        reason=row["reason"],
        message=row["message"],
        count=row["count"],
        first_timestamp=datetime.fromisoformat(row["first_timestamp"]),
        last_timestamp=datetime.fromisoformat(row["last_timestamp"]),
        component=row["component"],
    )
