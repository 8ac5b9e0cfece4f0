"""Commands that need no control plane: validate, explain, schema."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ebbtide.cli.main import app
from tests.spec.cases import INVALID_CASES

FIXTURES = Path(__file__).parent.parent / "fixtures"
runner = CliRunner()


def test_validate_accepts_the_seed_example() -> None:
    result = runner.invoke(app, ["validate", "-f", str(FIXTURES / "inference_endpoint.yaml")])
    assert result.exit_code == 0, result.output
    assert "inferenceendpoint.mlops.example.com/my-model-endpoint valid" in result.output


def test_validate_accepts_the_simplified_form() -> None:
    result = runner.invoke(app, ["validate", "-f", str(FIXTURES / "simple_autoscaling.json")])
    assert result.exit_code == 0, result.output
    assert '"targetCPUUtilizationPercentage": 60' in result.output


@pytest.mark.parametrize(
    ("document", "fragment"),
    [pytest.param(doc, fragment, id=case) for case, doc, fragment, _ in INVALID_CASES],
)
def test_validate_rejects_each_mistake_with_its_message(
    tmp_path: Path, document: dict[str, object], fragment: str
) -> None:
    file = tmp_path / "endpoint.yaml"
    file.write_text(yaml.safe_dump(document))
    result = runner.invoke(app, ["validate", "-f", str(file)])
    assert result.exit_code == 1
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_validate_prints_warnings_and_succeeds(tmp_path: Path) -> None:
    document = yaml.safe_load((FIXTURES / "inference_endpoint.yaml").read_text())
    document["spec"]["autoscaling"]["minReplicas"] = 5
    file = tmp_path / "e.yaml"
    file.write_text(yaml.safe_dump(document))
    result = runner.invoke(app, ["validate", "-f", str(file)])
    assert result.exit_code == 0
    assert "warning:" in result.output
    assert "autoscaling is disabled" in result.output


def test_malformed_yaml_is_one_error_line_and_its_fix(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("a: b\n  c: d\n")
    result = runner.invoke(app, ["validate", "-f", str(file)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines == [
        f"error: {file}:2:4: malformed YAML: mapping values are not allowed here",
        "  fix: check indentation and quoting",
    ]


def test_validate_reads_stdin() -> None:
    text = (FIXTURES / "inference_endpoint.yaml").read_text()
    result = runner.invoke(app, ["validate", "-f", "-"], input=text)
    assert result.exit_code == 0, result.output


def test_explain_documents_fields() -> None:
    result = runner.invoke(app, ["explain", "inferenceendpoint.spec.autoscaling"])
    assert result.exit_code == 0
    assert "KIND:       InferenceEndpoint" in result.output
    assert "minReplicas\t<integer>" in result.output
    assert "maxReplicas\t<integer> -required-" in result.output


def test_explain_unknown_field_says_what_exists() -> None:
    result = runner.invoke(app, ["explain", "ie.spec.autoscale"])
    assert result.exit_code == 1
    assert "autoscaling" in result.output


def test_schema_is_json_of_the_resource() -> None:
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.output)
    assert schema["title"] == "InferenceEndpoint"
    assert "spec" in schema["required"]
