"""Traces shaped like the Azure ones, written per test so the sweep runs anywhere."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

START = datetime(2023, 11, 16, 18, 0, 0)


def write_trace(path: Path, offsets: list[float]) -> None:
    rows = [(START + timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S.%f") for s in offsets]
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{r},1,1\n" for r in rows)
    )


@pytest.fixture(scope="session")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 minutes each: `conv` steady at about 5 requests/s, `code` in bursts of 40-80 requests
    within a second every 10-40 s over a trickle."""
    rng = random.Random(7)
    steady, at = [], 0.0
    while at < 1200:
        at += rng.expovariate(5.0)
        steady.append(at)
    bursty, at = [], 0.0
    while at < 1200:
        at += rng.expovariate(0.5)
        bursty.append(at)
    burst = 5.0
    while burst < 1200:
        bursty.extend(burst + rng.random() for _ in range(rng.randint(40, 80)))
        burst += rng.uniform(10, 40)
    directory = tmp_path_factory.mktemp("traces")
    write_trace(directory / "AzureLLMInferenceTrace_conv.csv", sorted(steady))
    write_trace(directory / "AzureLLMInferenceTrace_code.csv", sorted(bursty))
    return directory
