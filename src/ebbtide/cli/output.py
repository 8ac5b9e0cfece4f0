"""Printing as kubectl prints: plain aligned tables, kubectl's AGE format, yaml/json/name."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import yaml

COLUMN_GAP = 3


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as kubectl's tabwriter pads them: as wide as the widest cell, three spaces apart."""
    cells = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i] + COLUMN_GAP) for i, cell in enumerate(row[:-1])]
        lines.append(("".join(padded) + row[-1]).rstrip())
    return "\n".join(lines)


def human_duration(elapsed: timedelta) -> str:
    """kubectl's AGE: `30s`, `2m`, `5m10s`, `3h`, `2d4h`; as apimachinery's HumanDuration."""
    seconds = int(elapsed.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d" if rest == 0 else f"{days}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y" if rest == 0 else f"{years}y{rest}d"
    return f"{years}y"


def age(timestamp: str | None, now: datetime) -> str:
    """AGE of an RFC 3339 timestamp, or `<unknown>` as kubectl shows for a missing one."""
    if not timestamp:
        return "<unknown>"
    return human_duration(now - datetime.fromisoformat(timestamp.replace("Z", "+00:00")))


def dump(objects: Any, output: str) -> str:
    """`-o yaml` / `-o json`: one object as itself, several as a kubectl `List`."""
    if output == "json":
        return json.dumps(objects, indent=4)
    return yaml.safe_dump(objects, sort_keys=False).rstrip()


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Several objects wrapped as kubectl wraps them for -o yaml/json."""
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
