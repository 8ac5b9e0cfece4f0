"""Reading request-arrival traces: CSV files with a TIMESTAMP column (as the Azure LLM
inference traces in shared/traces). The load generator replays them live and the simulator
replays them in virtual time; both read them here."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from ebbtide.core.errors import TraceError


def read_timestamps(path: Path) -> list[float]:
    """The TIMESTAMP values as POSIX seconds, sorted; a clear error for anything else."""
    try:
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames is None or "TIMESTAMP" not in reader.fieldnames:
                raise TraceError(f"{path}: no TIMESTAMP column; expected a trace CSV")
            # Python parses microseconds; the traces carry one more digit.
            stamps = [datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp() for row in reader]
    except OSError as error:
        raise TraceError(f"{path}: cannot be read: {error.strerror}") from None
    except ValueError as error:
        raise TraceError(f"{path}: a TIMESTAMP is not a date and time: {error}") from None
    if not stamps:
        raise TraceError(f"{path}: the trace holds no rows")
    return sorted(stamps)
