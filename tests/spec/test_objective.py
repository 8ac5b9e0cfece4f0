"""spec.autoscaling.objective: the latency objective's defaults, errors, warnings and schema."""

from typing import Any

import pytest

from ebbtide.core.errors import SpecError
from ebbtide.kube.crd import crd_schema
from ebbtide.spec import validate_document
from tests.spec.cases import seed_with

PATH = "spec.autoscaling.objective"


def test_objective_defaults_to_the_p99() -> None:
    result = validate_document(seed_with(PATH, {"latencyMilliseconds": 200}), "f.yaml")
    objective = result.endpoint.spec.autoscaling.objective
    assert objective is not None
    assert (objective.percentile, objective.latency_milliseconds) == (99.0, 200.0)
    assert result.warnings == []


def test_objective_round_trips_in_the_manifest() -> None:
    document = seed_with(PATH, {"latencyMilliseconds": 150, "percentile": 95})
    manifest = validate_document(document).endpoint.manifest()
    assert manifest["spec"]["autoscaling"]["objective"] == {
        "latencyMilliseconds": 150.0,
        "percentile": 95.0,
    }


@pytest.mark.parametrize(
    ("value", "field", "fix"),
    [
        ({"latencyMilliseconds": 0}, "latencyMilliseconds", "fix: use a value above 0"),
        ({"latencyMilliseconds": 200_000}, "latencyMilliseconds", "fix: use 100000.0 or less"),
        ({"percentile": 99}, "latencyMilliseconds", "add latencyMilliseconds under"),
        ({"latencyMilliseconds": 200, "percentile": 100}, "percentile", "use a value below 100"),
        ({"latencyMilliseconds": 200, "percentile": 10}, "percentile", "use 50.0 or more"),
    ],
)
def test_objective_errors_name_the_field_and_fix(
    value: dict[str, Any], field: str, fix: str
) -> None:
    with pytest.raises(SpecError) as raised:
        validate_document(seed_with(PATH, value), "f.yaml")
    (problem,) = raised.value.problems
    assert problem.startswith(f"error: f.yaml: {PATH}.{field}: ")
    assert fix in problem


def test_objective_below_a_millisecond_warns() -> None:
    result = validate_document(seed_with(PATH, {"latencyMilliseconds": 0.5}), "f.yaml")
    (warning,) = result.warnings
    assert f"{PATH}.latencyMilliseconds: a latency objective of 0.5 ms" in warning
    assert "at least 1" in warning


def test_objective_with_fixed_replicas_warns() -> None:
    document = seed_with(PATH, {"latencyMilliseconds": 200})
    document["spec"]["autoscaling"]["minReplicas"] = 5
    warnings = validate_document(document, "f.yaml").warnings
    assert any(f"{PATH}: a latency objective with minReplicas equal" in w for w in warnings)


def test_crd_schema_carries_the_objective() -> None:
    autoscaling = crd_schema()["properties"]["spec"]["properties"]["autoscaling"]
    objective = autoscaling["properties"]["objective"]
    assert objective["required"] == ["latencyMilliseconds"]
    assert objective["properties"]["percentile"]["default"] == 99.0
    assert objective["properties"]["latencyMilliseconds"]["maximum"] == 100_000
