"""The CRD: valid for the API server, generated from the models, and as strict as `validate`."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest

from ebbtide.core.errors import KubernetesError, SpecError
from ebbtide.kube.admission import one_line
from ebbtide.kube.crd import (
    CPU_TARGET_NEEDS_REQUEST_RULE,
    MIN_WITHIN_MAX_RULE,
    NON_NEGATIVE_QUANTITY_PATTERN,
    cel_supported,
    crd_manifest,
    crd_schema,
    parse_server_version,
    structural_problems,
    structural_schema,
)
from ebbtide.kube.manifests import RenderOptions
from ebbtide.kube.reconcile import Observed, plan
from ebbtide.spec.models import Autoscaling
from ebbtide.spec.quantity import QuantityError, parse_quantity
from ebbtide.spec.validation import validate_document
from tests.kube.admission import admission_errors
from tests.spec.cases import INVALID_CASES, SEED, seed_with

KUBERNETES = kubernetes_validate.utils.latest_version()
NOW = datetime(2026, 1, 1, tzinfo=UTC)

# Checks that need quantity arithmetic or a walk over the metrics list run in the operator,
# which refuses the spec and says why in the endpoint's status; every other mistake is
# refused by the API server at `kubectl apply`.
CAUGHT_BY_THE_OPERATOR = {
    "limit-below-request",
    "zero-cpu-request",
    "memory-utilization-without-request",
}


def test_crd_validates_against_the_kubernetes_schema() -> None:
    assert kubernetes_validate.validate(crd_manifest(), KUBERNETES, strict=True)


def test_schema_is_structural() -> None:
    assert structural_problems(crd_schema()) == []


def test_crd_names_short_name_and_subresources() -> None:
    spec = crd_manifest()["spec"]
    assert crd_manifest()["metadata"]["name"] == "inferenceendpoints.mlops.example.com"
    assert spec["names"]["shortNames"] == ["ie"]
    assert spec["scope"] == "Namespaced"
    version = spec["versions"][0]
    assert version["name"] == "v1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.autoscaling.minReplicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def _at(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    node = schema
    for part in json_path.strip(".").split("."):
        node = node["properties"][part]
    return node


def test_scale_paths_exist_with_the_types_kubernetes_requires() -> None:
    schema = crd_schema()
    scale = crd_manifest()["spec"]["versions"][0]["subresources"]["scale"]
    assert _at(schema, scale["specReplicasPath"])["type"] == "integer"
    assert _at(schema, scale["statusReplicasPath"])["type"] == "integer"
    assert _at(schema, scale["labelSelectorPath"])["type"] == "string"
    # The scale subresource reads the floor, so it must always be there: defaulted to 1.
    assert _at(schema, scale["specReplicasPath"])["default"] == 1


def test_printer_columns_show_what_get_ie_shows() -> None:
    columns = crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]
    default_columns = [c["name"].upper() for c in columns if c.get("priority", 0) == 0]
    assert default_columns == ["MIN", "MAX", "REPLICAS", "TARGET", "READY", "AGE"]
    schema = crd_schema()
    for column in columns:
        if column["jsonPath"].startswith((".spec", ".status")):
            assert _at(schema, column["jsonPath"])["type"] == column["type"]


def test_schema_comes_from_the_models() -> None:
    autoscaling = _at(crd_schema(), ".spec.autoscaling")
    max_replicas = Autoscaling.model_fields["max_replicas"]
    assert autoscaling["properties"]["maxReplicas"]["description"] == max_replicas.description
    assert set(autoscaling["properties"]) == {
        field.alias or name for name, field in Autoscaling.model_fields.items()
    }
    assert autoscaling["required"] == ["maxReplicas"]


def test_optional_quantity_becomes_int_or_string() -> None:
    cpu = _at(crd_schema(), ".spec.resources.requests.cpu")
    assert cpu["x-kubernetes-int-or-string"] is True
    assert cpu["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert "type" not in cpu


def test_exclusive_bounds_take_the_openapi_3_0_form() -> None:
    target = _at(crd_schema(), ".spec.autoscaling.targetCPUUtilizationPercentage")
    assert target == {**target, "type": "integer", "minimum": 1}
    assert "exclusiveMinimum" not in target
    latency = _at(crd_schema(), ".spec.batching.maxLatencyMs")
    assert (latency["minimum"], latency["exclusiveMinimum"]) == (0, True)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"$ref": "#/x"}}}, ".a: $ref is not allowed"),
        ({"type": "object", "properties": {"a": {}}}, ".a: type must be set"),
        (
            {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}},
            "anyOf is allowed only for int-or-string",
        ),
        (
            {"type": "object", "properties": {}, "additionalProperties": False},
            "mutually exclusive",
        ),
        ({"type": "integer", "exclusiveMinimum": 0}, "must be a boolean"),
        ({"type": "string", "const": "x"}, "const is not allowed"),
        (
            {"x-kubernetes-int-or-string": True, "type": "string"},
            "must not set type",
        ),
    ],
)
def test_structural_problems_are_found(schema: dict[str, Any], problem: str) -> None:
    assert any(problem in found for found in structural_problems(schema))


def test_structural_conversion_drops_null_options_and_their_null_default() -> None:
    converted = structural_schema(
        {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "description": "d"}
    )
    assert converted == {"type": "integer", "description": "d"}


def spec_accepts(text: str) -> bool:
    try:
        return parse_quantity(text) >= 0
    except QuantityError:
        return False


@pytest.mark.parametrize(
    "text", ["500m", "1", "1.5", "0.25", "1Gi", "512Mi", "2k", "1e3", "+1", ".5", "0"]
)
def test_quantity_pattern_accepts_what_the_spec_accepts(text: str) -> None:
    assert spec_accepts(text)
    assert re.match(NON_NEGATIVE_QUANTITY_PATTERN, text)


@pytest.mark.parametrize("text", ["lots", "-1", "-500m", "1GB", "m", "", "1 Gi", "--1"])
def test_quantity_pattern_rejects_what_the_spec_rejects(text: str) -> None:
    assert not spec_accepts(text)
    assert not re.match(NON_NEGATIVE_QUANTITY_PATTERN, text)


def test_admission_accepts_the_seed_and_defaults_it() -> None:
    assert admission_errors(crd_manifest(), SEED) == []
    without_min = seed_with("spec.autoscaling.minReplicas", ...)
    assert admission_errors(crd_manifest(), without_min) == []


@pytest.mark.parametrize(
    ("case", "document", "fragment", "structural"),
    [pytest.param(*case, id=case[0]) for case in INVALID_CASES],
)
def test_every_invalid_case_is_refused_on_the_cluster(
    case: str, document: dict[str, Any], fragment: str, structural: bool
) -> None:
    errors = admission_errors(crd_manifest(), copy.deepcopy(document))
    if case in CAUGHT_BY_THE_OPERATOR:
        assert errors == [], "admission now catches this: move it out of CAUGHT_BY_THE_OPERATOR"
        body = {**copy.deepcopy(document), "metadata": {**document["metadata"], "uid": "u"}}
        decision = plan(Observed("default", "my-model-endpoint", body), RenderOptions(), NOW)
        assert decision.actions == ()
        assert decision.status is not None
        ready = decision.status["conditions"][0]
        assert (ready["type"], ready["status"], ready["reason"]) == (
            "Ready",
            "False",
            "InvalidSpec",
        )
        assert fragment in ready["message"]
    else:
        assert errors, f"the API server would store {case}"
    if structural:
        assert case not in CAUGHT_BY_THE_OPERATOR


def _validate_says(document: dict[str, Any]) -> list[str]:
    """`ebbtide validate`'s errors as `FIELD: MESSAGE; fix: FIX` lines."""
    with pytest.raises(SpecError) as caught:
        validate_document(copy.deepcopy(document), "x")
    return [one_line(p).removeprefix("error: x: ") for p in caught.value.problems]


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(seed_with("spec.autoscaling.minReplicas", 6), id="min-above-max"),
        pytest.param(seed_with("spec.resources.requests", {"memory": "1Gi"}), id="no-cpu-request"),
        pytest.param(
            {**SEED, "spec": {"model": SEED["spec"]["model"], "autoscaling": {"maxReplicas": 3}}},
            id="default-cpu-target-without-request",
        ),
    ],
)
def test_cel_rules_say_what_validate_says(document: dict[str, Any]) -> None:
    errors = admission_errors(crd_manifest(), copy.deepcopy(document))
    cel = [error.removeprefix(".").replace(": Invalid value: ", ": ", 1) for error in errors]
    assert cel == _validate_says(document)


def test_cel_static_messages_name_the_fix() -> None:
    # Servers with CEL but without messageExpression (1.25, 1.26) show `message`.
    assert MIN_WITHIN_MAX_RULE["message"] == (
        "minReplicas is greater than maxReplicas; fix: set minReplicas to at most maxReplicas"
    )
    assert "fix: add spec.resources.requests.cpu" in CPU_TARGET_NEEDS_REQUEST_RULE["message"]


def test_metrics_without_cpu_target_need_no_cpu_request() -> None:
    document = seed_with("spec.autoscaling.targetCPUUtilizationPercentage", ...)
    document["spec"]["resources"] = {"requests": {"memory": "1Gi"}}
    memory = {"type": "AverageValue", "averageValue": "800Mi"}
    document["spec"]["autoscaling"]["metrics"] = [
        {"type": "Resource", "resource": {"name": "memory", "target": memory}}
    ]
    assert admission_errors(crd_manifest(), document) == []


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {key for value in node.values() for key in _keys(value)}
    if isinstance(node, list):
        return {key for item in node for key in _keys(item)}
    return set()


def _defaults(node: Any) -> list[Any]:
    if isinstance(node, dict):
        found = [node["default"]] if "default" in node else []
        return found + [d for value in node.values() for d in _defaults(value)]
    if isinstance(node, list):
        return [d for item in node for d in _defaults(item)]
    return []


def test_without_cel_the_crd_carries_no_rule_and_is_otherwise_the_same() -> None:
    with_cel, without = crd_manifest(), crd_manifest(cel=False)
    assert "x-kubernetes-validations" in _keys(with_cel)
    assert "x-kubernetes-validations" not in _keys(without)
    assert kubernetes_validate.validate(without, KUBERNETES, strict=True)
    assert admission_errors(without, SEED) == []


def test_no_empty_string_default_which_1_20_refuses() -> None:
    assert "" not in _defaults(crd_schema())


@pytest.mark.parametrize(
    ("info", "version", "cel"),
    [
        ({"major": "1", "minor": "20"}, (1, 20), False),
        ({"major": "1", "minor": "27+"}, (1, 27), False),
        ({"major": "1", "minor": "28"}, (1, 28), True),
        ({"major": "1", "minor": "34+", "gitVersion": "v1.34.1-eks"}, (1, 34), True),
    ],
)
def test_cel_by_the_servers_version(
    info: dict[str, str], version: tuple[int, int], cel: bool
) -> None:
    assert parse_server_version(info) == version
    assert cel_supported(version) is cel


def test_an_unreadable_version_is_a_clear_error() -> None:
    with pytest.raises(KubernetesError, match="cannot read the server's version"):
        parse_server_version({"major": "1", "minor": ""})
