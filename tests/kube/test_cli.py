"""`ebbtide render`, `ebbtide kube crd` and `ebbtide kube install` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml
from typer.testing import CliRunner

from ebbtide.cli.main import app
from tests.spec.cases import seed_with

SEED_FILE = Path(__file__).parent.parent / "fixtures" / "inference_endpoint.yaml"
KUBERNETES = kubernetes_validate.utils.latest_version()
runner = CliRunner()


def test_render_prints_the_three_objects_of_the_seed() -> None:
    result = runner.invoke(app, ["render", "-f", str(SEED_FILE)])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.stdout))
    assert [o["kind"] for o in objects] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for manifest in objects:
        assert kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
    hpa = objects[2]["spec"]
    target = hpa["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert (hpa["minReplicas"], hpa["maxReplicas"], target) == (1, 5, 60)


def test_render_json_is_a_list() -> None:
    result = runner.invoke(app, ["render", "-f", str(SEED_FILE), "-o", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert listed["kind"] == "List"
    assert len(listed["items"]) == 3


def test_render_takes_the_image_from_the_environment() -> None:
    result = runner.invoke(
        app, ["render", "-f", str(SEED_FILE)], env={"EBBTIDE_IMAGE": "registry.local/e:1"}
    )
    deployment = next(yaml.safe_load_all(result.stdout))
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/e:1"


def test_render_refuses_an_invalid_file_and_prints_nothing(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text(yaml.safe_dump(seed_with("spec.autoscaling.minReplicas", 9)))
    result = runner.invoke(app, ["render", "-f", str(file)])
    assert result.exit_code == 1
    assert "greater than maxReplicas" in result.stderr
    assert result.stdout == ""


def test_render_reports_what_kubernetes_cannot_run(tmp_path: Path) -> None:
    file = tmp_path / "local.yaml"
    file.write_text(yaml.safe_dump(seed_with("spec.model.uri", "file:///srv/iris")))
    result = runner.invoke(app, ["render", "-f", str(file)])
    assert result.exit_code == 1
    assert "pvc://CLAIM/PATH" in result.stderr
    assert "Traceback" not in result.output


def test_render_normalizes_the_simplified_form(tmp_path: Path) -> None:
    document = seed_with(
        "spec.autoscaling", {"min_servers": 2, "max_servers": 6, "target_utilization": 0.7}
    )
    file = tmp_path / "simple.yaml"
    file.write_text(yaml.safe_dump(document))
    result = runner.invoke(app, ["render", "-f", str(file)])
    assert result.exit_code == 0, result.output
    hpa = list(yaml.safe_load_all(result.stdout))[2]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_crd_command_prints_the_crd() -> None:
    result = runner.invoke(app, ["kube", "crd", "-o", "json"])
    assert result.exit_code == 0, result.output
    crd = json.loads(result.stdout)
    assert crd["metadata"]["name"] == "inferenceendpoints.mlops.example.com"
    assert kubernetes_validate.validate(crd, KUBERNETES, strict=True)


def test_install_prints_everything_for_the_namespace() -> None:
    result = runner.invoke(app, ["kube", "install", "--namespace", "ml-platform"])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.stdout))
    assert objects[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "ml-platform", "labels": {"app.kubernetes.io/part-of": "ebbtide"}},
    }
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "ml-platform"
    webhook = objects[-1]["webhooks"][0]["clientConfig"]["service"]
    assert (webhook["namespace"], webhook["name"]) == ("ml-platform", "ebbtide-operator")


def test_render_takes_the_hpa_version_and_refuses_an_unknown_one() -> None:
    result = runner.invoke(app, ["render", "-f", str(SEED_FILE), "--hpa-version", "v2beta2"])
    assert result.exit_code == 0, result.output
    hpa = list(yaml.safe_load_all(result.stdout))[-1]
    assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v2beta2", "HorizontalPodAutoscaler")
    result = runner.invoke(app, ["render", "-f", str(SEED_FILE), "--hpa-version", "v1"])
    assert result.exit_code == 1
    assert "use autoscaling/v2 or autoscaling/v2beta2" in result.stderr


def test_operator_refuses_a_webhook_service_without_a_namespace() -> None:
    result = runner.invoke(app, ["kube", "operator", "--webhook-service", "ebbtide-operator"])
    assert result.exit_code == 1
    assert "expected NAMESPACE/NAME" in result.stderr


def test_unknown_output_format_is_an_error() -> None:
    result = runner.invoke(app, ["kube", "crd", "-o", "table"])
    assert result.exit_code == 1
    assert "use yaml or json" in result.stderr


def test_render_and_crd_load_no_kubernetes_client() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ebbtide.cli.main import app\n"
        f"r = CliRunner().invoke(app, ['render', '-f', {str(SEED_FILE)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['kube', 'crd'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('kopf', 'kubernetes', 'aiohttp', 'cryptography')))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "[]"


def test_crd_and_install_leave_the_cel_rules_out_for_older_servers() -> None:
    for command in (["kube", "crd"], ["kube", "install"]):
        with_cel = runner.invoke(app, command)
        without = runner.invoke(app, [*command, "--no-cel"])
        assert with_cel.exit_code == 0, with_cel.output
        assert without.exit_code == 0, without.output
        assert "x-kubernetes-validations" in with_cel.stdout
        assert "x-kubernetes-validations" not in without.stdout
