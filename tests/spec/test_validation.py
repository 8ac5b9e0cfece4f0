import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.core.errors import SpecError
from ebbtide.spec import Document, parse_documents, validate, validate_document
from ebbtide.spec.validation import validate_autoscaling_fragment
from tests.spec.cases import INVALID_CASES, SEED, seed_with


def test_seed_example_is_valid_and_normalized() -> None:
    result = validate_document(SEED, "inference_endpoint.yaml")
    endpoint = result.endpoint
    assert result.warnings == []
    assert endpoint.metadata.namespace == "default"
    assert endpoint.spec.autoscaling.min_replicas == 1
    assert endpoint.spec.autoscaling.max_replicas == 5
    assert endpoint.spec.autoscaling.target_cpu_utilization_percentage == 60
    assert str(endpoint.cpu_request()) == "0.500"
    assert endpoint.memory_request() == 2**30
    assert endpoint.manifest()["spec"]["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}


@pytest.mark.parametrize(
    ("document", "fragment"),
    [pytest.param(doc, fragment, id=case) for case, doc, fragment, _ in INVALID_CASES],
)
def test_each_mistake_gets_its_message(document: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError) as raised:
        validate_document(document, "endpoint.yaml")
    text = "\n".join(raised.value.problems)
    assert fragment in text
    assert "endpoint.yaml" in text


def test_every_error_names_a_fix_or_field() -> None:
    for _, document, _, _ in INVALID_CASES:
        with pytest.raises(SpecError) as raised:
            validate_document(document, "f.yaml")
        for problem in raised.value.problems:
            assert problem.startswith("error: f.yaml")


@pytest.mark.parametrize(
    ("path", "value", "fix"),
    [
        ("spec.autoscaling.minReplicas", -1, "fix: use 0 or more"),
        ("spec.autoscaling.targetCPUUtilizationPercentage", 0, "fix: use a value above 0"),
        ("spec.autoscaling.maxReplicas", "five", "fix: use a whole number"),
        ("spec.model.version", 1, 'quote it if it looks like a number, e.g. version: "1"'),
    ],
)
def test_range_and_type_errors_say_what_to_use(path: str, value: Any, fix: str) -> None:
    with pytest.raises(SpecError) as raised:
        validate_document(seed_with(path, value), "f.yaml")
    (problem,) = raised.value.problems
    assert problem.startswith(f"error: f.yaml: {path}: ")
    assert fix in problem


def test_min_equal_max_warns_that_autoscaling_is_disabled() -> None:
    document = seed_with("spec.autoscaling.minReplicas", 5)
    result = validate_document(document)
    assert len(result.warnings) == 1
    assert "autoscaling is disabled" in result.warnings[0]


@pytest.mark.parametrize(("percent", "word"), [(95, "very high"), (5, "very low")])
def test_extreme_targets_warn_but_do_not_block(percent: int, word: str) -> None:
    document = seed_with("spec.autoscaling.targetCPUUtilizationPercentage", percent)
    result = validate_document(document)
    assert word in result.warnings[0]
    assert result.endpoint.spec.autoscaling.target_cpu_utilization_percentage == percent


def test_simplified_form_inside_an_endpoint_is_normalized() -> None:
    document = seed_with(
        "spec.autoscaling", {"min_servers": 2, "max_servers": 6, "target_utilization": 0.6}
    )
    autoscaling = validate_document(document).endpoint.spec.autoscaling
    assert (autoscaling.min_replicas, autoscaling.max_replicas) == (2, 6)
    assert autoscaling.target_cpu_utilization_percentage == 60


def test_simplified_fragment_alone() -> None:
    fragment = {"min_servers": 2, "max_servers": 6, "target_utilization": 0.6}
    autoscaling, warnings = validate_autoscaling_fragment(Document(fragment, "simple.json"))
    assert autoscaling.target_cpu_utilization_percentage == 60
    assert warnings == []


def test_simplified_fragment_is_not_an_endpoint() -> None:
    fragment = {"min_servers": 2, "max_servers": 6, "target_utilization": 0.6}
    with pytest.raises(SpecError) as raised:
        validate_document(fragment)
    assert "autoscaling fragment" in raised.value.problems[0]


def test_simplified_and_canonical_together_is_an_error() -> None:
    document = seed_with("spec.autoscaling.min_servers", 2)
    with pytest.raises(SpecError, match="invalid"):
        validate_document(document)


def test_default_cpu_target_still_needs_a_request() -> None:
    document = seed_with("spec.autoscaling.targetCPUUtilizationPercentage", ...)
    document["spec"]["resources"] = {}
    with pytest.raises(SpecError) as raised:
        validate_document(document)
    assert "default target of 80%" in raised.value.problems[0]


def test_problems_point_at_the_line() -> None:
    text = (
        "apiVersion: mlops.example.com/v1\nkind: InferenceEndpoint\nmetadata:\n  name: a\n"
        "spec:\n  model: {name: m, version: v1}\n  autoscaling:\n    minReplicas: 7\n"
        "    maxReplicas: 2\n  resources:\n    requests: {cpu: 1}\n"
    )
    [document] = parse_documents(text, "e.yaml")
    with pytest.raises(SpecError) as raised:
        validate(document)
    assert raised.value.problems[0].startswith("error: e.yaml:8: spec.autoscaling.minReplicas:")


def test_all_errors_are_reported_at_once() -> None:
    document = seed_with("metadata.name", "Bad_Name")
    document["spec"]["autoscaling"]["maxReplica"] = 1
    with pytest.raises(SpecError) as raised:
        validate_document(document)
    assert len(raised.value.problems) >= 2


def test_the_model_is_frozen() -> None:
    endpoint = validate_document(SEED).endpoint
    with pytest.raises(ValueError, match="frozen"):
        endpoint.spec.autoscaling.max_replicas = 9  # type: ignore[misc]


def test_scaling_metrics_include_the_cpu_shorthand() -> None:
    endpoint = validate_document(SEED).endpoint
    [cpu] = endpoint.scaling_metrics()
    assert cpu.resource is not None
    assert cpu.resource.name == "cpu"
    assert cpu.resource.target.average_utilization == 60


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "apiVersion",
                    "kind",
                    "metadata",
                    "name",
                    "spec",
                    "model",
                    "autoscaling",
                    "minReplicas",
                    "maxReplicas",
                    "resources",
                    "requests",
                    "cpu",
                    "x",
                    "target_utilization",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_no_input_crashes_the_validator(data: Any) -> None:
    try:
        validate_document(data)
    except SpecError as error:
        assert error.problems


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_no_text_crashes_the_loader(text: str) -> None:
    try:
        for document in parse_documents(text, "fuzz.yaml"):
            validate(document)
    except SpecError as error:
        assert str(error)


@settings(max_examples=100, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "path": st.sampled_from(
                [
                    "spec.autoscaling.minReplicas",
                    "spec.autoscaling.maxReplicas",
                    "spec.resources.requests.cpu",
                    "metadata.name",
                    "spec.model",
                ]
            ),
            "value": json_values,
        }
    )
)
def test_mutated_seed_never_crashes(change: dict[str, Any]) -> None:
    document = seed_with(change["path"], change["value"])
    try:
        validate_document(json.loads(json.dumps(document)))
    except SpecError as error:
        assert error.problems
