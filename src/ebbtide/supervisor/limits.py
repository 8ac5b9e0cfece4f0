"""Enforcing `resources.limits` on a replica process with cgroups, where the OS lets us.

A container runtime puts each pod in a cgroup with a CPU quota (`limits.cpu`) and a memory
ceiling (`limits.memory`). Locally we do the same when the cgroup tree is writable: cgroup v2
(`cpu.max`, `memory.max`) or v1 (`cpu.cfs_quota_us`, `memory.limit_in_bytes`). Where it is
not (no privileges, a read-only mount), the replica runs unconfined and the reason is kept
so that `describe` can say so instead of pretending.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_NAME = "ebbtide"
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class LimitsOutcome:
    """Whether the limits hold for a replica, and a sentence that says how or why not."""

    enforced: bool
    note: str


class CgroupLimits:
    """Puts replica processes into per-replica cgroups under `<root>/ebbtide/`."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        self.version, self.reason = self._detect()

    def _detect(self) -> tuple[int | None, str]:
        if (self.root / "cgroup.controllers").exists():
            controllers = (self.root / "cgroup.controllers").read_text().split()
            missing = {"cpu", "memory"} - set(controllers)
            if missing:
                return None, f"cgroup v2 lacks the {', '.join(sorted(missing))} controller"
            return (2, "") if os.access(self.root, os.W_OK) else (None, "cgroup v2 is read-only")
        cpu, memory = self.root / "cpu", self.root / "memory"
        if cpu.is_dir() and memory.is_dir():
            if os.access(cpu, os.W_OK) and os.access(memory, os.W_OK):
                return 1, ""
            return None, "cgroup v1 is read-only for this user"
        return None, f"no cgroup hierarchy at {self.root}"

    def apply(
        self, replica: str, pid: int, cpu: Decimal | None, memory: int | None
    ) -> LimitsOutcome:
        """Confine `pid` to `cpu` cores and `memory` bytes; None means no limit of that kind."""
        if cpu is None and memory is None:
            return LimitsOutcome(True, "no limits set")
        if self.version is None:
            return LimitsOutcome(False, f"limits not enforced: {self.reason}")
        try:
            if self.version == 2:
                self._apply_v2(replica, pid, cpu, memory)
            else:
                self._apply_v1(replica, pid, cpu, memory)
        except OSError as error:
            return LimitsOutcome(False, f"limits not enforced: {error.strerror} ({error.filename})")
        return LimitsOutcome(True, f"enforced with cgroup v{self.version}")

    def release(self, replica: str) -> None:
        """Remove the replica's cgroups once its process has exited."""
        directories = (
            [self.root / GROUP_NAME / replica]
            if self.version == 2
            else [self.root / c / GROUP_NAME / replica for c in ("cpu", "memory")]
        )
        for directory in directories:
            with contextlib.suppress(OSError):
                directory.rmdir()

    def _apply_v2(self, replica: str, pid: int, cpu: Decimal | None, memory: int | None) -> None:
        parent = self.root / GROUP_NAME
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text("+cpu +memory")
        group = parent / replica
        group.mkdir(exist_ok=True)
        if cpu is not None:
            (group / "cpu.max").write_text(f"{_quota(cpu)} {CFS_PERIOD_US}")
        if memory is not None:
            (group / "memory.max").write_text(str(memory))
        (group / "cgroup.procs").write_text(str(pid))

    def _apply_v1(self, replica: str, pid: int, cpu: Decimal | None, memory: int | None) -> None:
        if cpu is not None:
            group = self.root / "cpu" / GROUP_NAME / replica
            group.mkdir(parents=True, exist_ok=True)
            (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(_quota(cpu)))
            (group / "cgroup.procs").write_text(str(pid))
        if memory is not None:
            group = self.root / "memory" / GROUP_NAME / replica
            group.mkdir(parents=True, exist_ok=True)
            (group / "memory.limit_in_bytes").write_text(str(memory))
            (group / "cgroup.procs").write_text(str(pid))


def _quota(cpu: Decimal) -> int:
    """CPU cores as a CFS quota per period; the kernel's minimum is 1 ms."""
    return max(1000, int(cpu * CFS_PERIOD_US))
