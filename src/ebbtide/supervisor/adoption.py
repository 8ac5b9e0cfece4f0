"""Replicas that outlive their control plane, and the next control plane taking them over.

Each running replica is recorded in the state store: its name, template, port and process
identity (pid and kernel start time). A control plane that starts reads the records and adopts
a replica only when all of these hold:

- a process with that pid runs and the kernel gives it the recorded start time (a recycled
  pid has another start time);
- that process listens on the recorded port;
- it answers the readiness probe of the recorded model and version on that port.

Anything else means the replica died while no control plane watched: its record is dropped
and the endpoint's loop starts a replacement. An adopted replica is not our child, so it is
watched through a pidfd, which becomes readable when it exits; its exit code is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import psutil

from ebbtide.core.processes import ProcessIdentity
from ebbtide.supervisor.pidfd import PidfdProcess
from ebbtide.supervisor.template import ReplicaTemplate

REPLICA_ROLE = "replica"
UNKNOWN_EXIT_CODE = 255


class ProcessLedger(Protocol):
    """Where running processes are recorded (the state store)."""

    def record_process(self, name: str, role: str, record: dict[str, Any]) -> None: ...

    def forget_process(self, name: str) -> None: ...

    def processes(self, role: str | None = None) -> dict[str, dict[str, Any]]: ...


@dataclass(frozen=True)
class ReplicaRecord:
    """What a control plane needs to take a running replica over."""

    name: str
    template: ReplicaTemplate
    port: int
    identity: ProcessIdentity
    created: datetime
    started_at: float
    """The monotonic clock's reading at start; the same clock in every process of one boot."""
    restarts: int

    def to_record(self) -> dict[str, Any]:
        template = {
            key: (str(value) if isinstance(value, Path | Decimal) else value)
            for key, value in vars(self.template).items()
            if key != "hash"
        }
        return {
            "template": template,
            "port": self.port,
            **self.identity.to_record(),
            "created": self.created.isoformat(),
            "started_at": self.started_at,
            "restarts": self.restarts,
        }

    @classmethod
    def from_record(cls, name: str, record: dict[str, Any]) -> ReplicaRecord:
        fields = dict(record["template"])
        fields["repository"] = Path(fields["repository"])
        for decimal in ("cpu_request", "cpu_limit"):
            if fields.get(decimal) is not None:
                fields[decimal] = Decimal(fields[decimal])
        return cls(
            name=name,
            template=ReplicaTemplate(**fields),
            port=int(record["port"]),
            identity=ProcessIdentity.from_record(record),
            created=datetime.fromisoformat(record["created"]),
            started_at=float(record["started_at"]),
            restarts=int(record["restarts"]),
        )


def listens_on(identity: ProcessIdentity, port: int) -> bool:
    """Whether this very process listens on the loopback TCP port."""
    if not identity.alive():
        return False
    try:
        connections = psutil.Process(identity.pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections
    )


class AdoptedProcess(PidfdProcess):
    """A replica process started by an earlier control plane, watched through a pidfd."""

    def __init__(self, identity: ProcessIdentity) -> None:
        self.identity = identity
        super().__init__(identity.pid, identity.open)

    async def wait(self) -> int:
        await self._gone.wait()
        if self.returncode is None:
            self.identity.reap()
            self.returncode = UNKNOWN_EXIT_CODE
        return self.returncode
