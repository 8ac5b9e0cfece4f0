"""A model repository trained once per test session, and replica processes to serve it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ebbtide.runtime.repository import ModelMetadata, ModelRepository
from ebbtide.runtime.samples import ensure_sample
from ebbtide.runtime.tensors import Signature, TensorSpec
from tests.runtime.replicas import Replica

MODELS = Path(__file__).parent / "models"
ROWS = Signature(
    inputs=(TensorSpec("x", "FP64", (-1, 3)),),
    outputs=(TensorSpec("y", "FP64", (-1, 3)), TensorSpec("rows", "FP64", (-1, 1))),
)


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    """Samples and test models, trained and written once for the whole session."""
    repo = ModelRepository(tmp_path_factory.mktemp("models"))
    ensure_sample("fast", repo)
    ensure_sample("fast-onnx", repo)
    repo.add("echo", "v1", MODELS / "echo.py")
    repo.add("doubler", "v1", MODELS / "doubler.py", ModelMetadata(signature=ROWS))
    slow = Signature(
        inputs=(TensorSpec("x", "FP64", (-1, 1)),), outputs=(TensorSpec("y", "FP64", (-1, 1)),)
    )
    repo.add("slow", "v1", MODELS / "slow.py", ModelMetadata(signature=slow))
    repo.add("slower", "v1", MODELS / "slower.py", ModelMetadata(signature=slow))
    return repo


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replica-logs")


@pytest.fixture(scope="module")
def fast_replica(repository: ModelRepository, logs: Path) -> Iterator[Replica]:
    with Replica(repository.root, "sample-fast:v1", logs, "--max-body-bytes", "100000") as replica:
        yield replica


@pytest.fixture(scope="module")
def batched_replica(repository: ModelRepository, logs: Path) -> Iterator[Replica]:
    args = ("--max-batch-size", "32", "--max-latency-ms", "20")
    with Replica(repository.root, "sample-fast", logs, *args) as replica:
        yield replica
