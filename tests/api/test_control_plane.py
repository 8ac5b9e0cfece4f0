"""A real control-plane process on a temporary state directory, driven through the CLI."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from ebbtide.api.client import ControlPlaneClient
from ebbtide.cli.main import app
from ebbtide.core.errors import ConflictError
from tests.conftest import start_control_plane, stop_process

pytestmark = pytest.mark.integration
SEED = Path(__file__).parent.parent / "fixtures" / "inference_endpoint.yaml"
runner = CliRunner()


def ebbtide(*args: str) -> Any:
    return runner.invoke(app, list(args))


def seed_with(tmp_path: Path, **autoscaling: int) -> Path:
    document = yaml.safe_load(SEED.read_text())
    document["spec"]["autoscaling"].update(autoscaling)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_apply_get_describe_delete(control_plane: object, tmp_path: Path) -> None:
    created = ebbtide("apply", "-f", str(SEED))
    assert created.exit_code == 0, created.output
    assert created.output == "inferenceendpoint.mlops.example.com/my-model-endpoint created\n"
    assert ebbtide("apply", "-f", str(SEED)).output.endswith("my-model-endpoint unchanged\n")
    changed = ebbtide("apply", "-f", str(seed_with(tmp_path, maxReplicas=7)))
    assert changed.output.endswith("my-model-endpoint configured\n")

    listing = ebbtide("get", "ie").output.splitlines()
    assert listing[0].split() == ["NAME", "MIN", "MAX", "REPLICAS", "TARGET", "READY", "AGE"]
    assert listing[1].split()[:3] == ["my-model-endpoint", "1", "7"]
    assert "60%" in listing[1]

    as_yaml = yaml.safe_load(ebbtide("get", "ie", "my-model-endpoint", "-o", "yaml").output)
    assert as_yaml["metadata"]["generation"] == 2
    assert as_yaml["spec"]["autoscaling"]["maxReplicas"] == 7

    described = ebbtide("describe", "ie", "my-model-endpoint").output
    assert "Max replicas:" in described
    assert "<unknown>/60%" in described

    deleted = ebbtide("delete", "-f", str(SEED))
    assert deleted.output == 'inferenceendpoint.mlops.example.com "my-model-endpoint" deleted\n'
    missing = ebbtide("get", "ie", "my-model-endpoint")
    assert missing.exit_code == 1
    assert 'Error from server (NotFound): inferenceendpoints "my-model-endpoint" not found' in (
        missing.output
    )


def test_the_output_of_get_applies_again_unchanged(control_plane: object, tmp_path: Path) -> None:
    ebbtide("apply", "-f", str(SEED))
    exported = tmp_path / "exported.yaml"
    exported.write_text(ebbtide("get", "ie", "my-model-endpoint", "-o", "yaml").output)
    again = ebbtide("apply", "-f", str(exported))
    assert again.exit_code == 0, again.output
    assert again.output.endswith("unchanged\n")


def test_dry_run_changes_nothing(control_plane: object) -> None:
    result = ebbtide("apply", "--dry-run", "-f", str(SEED))
    assert result.output == (
        "inferenceendpoint.mlops.example.com/my-model-endpoint created (server dry run)\n"
    )
    assert "No resources found in default namespace." in ebbtide("get", "ie").output
    empty = ebbtide("top", "pods")
    assert empty.exit_code == 0
    assert empty.output == "No resources found in default namespace.\n"


def test_a_file_with_one_bad_document_applies_nothing(
    control_plane: object, tmp_path: Path
) -> None:
    good = yaml.safe_load(SEED.read_text())
    bad = yaml.safe_load(SEED.read_text())
    bad["metadata"]["name"] = "second"
    bad["spec"]["autoscaling"].update(minReplicas=6, maxReplicas=2)
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump_all([good, bad]))
    result = ebbtide("apply", "-f", str(both))
    assert result.exit_code == 1
    assert "nothing was applied" in result.output
    assert "minReplicas" in result.output
    assert "No resources found" in ebbtide("get", "ie").output


def test_label_selectors_filter_endpoints(control_plane: object, tmp_path: Path) -> None:
    document = yaml.safe_load(SEED.read_text())
    document["metadata"]["labels"] = {"team": "search"}
    labelled = tmp_path / "labelled.yaml"
    labelled.write_text(yaml.safe_dump(document))
    ebbtide("apply", "-f", str(labelled))
    assert "my-model-endpoint" in ebbtide("get", "ie", "-l", "team=search").output
    assert "No resources found" in ebbtide("get", "ie", "-l", "team=ads").output
    bad = ebbtide("get", "ie", "-l", "team")
    assert bad.exit_code == 1
    assert "unable to parse label selector" in bad.output


def test_applied_endpoints_survive_kill_9(ebbtide_home: Path, tmp_path: Path) -> None:
    first = start_control_plane(ebbtide_home)
    try:
        ebbtide("apply", "-f", str(SEED))
        ebbtide("apply", "-f", str(seed_with(tmp_path, maxReplicas=4)))
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop_process(first)
    second = start_control_plane(ebbtide_home)  # the stale socket is replaced
    try:
        restored = yaml.safe_load(ebbtide("get", "ie", "my-model-endpoint", "-o", "yaml").output)
        assert restored["metadata"]["generation"] == 2
        assert restored["spec"]["autoscaling"]["maxReplicas"] == 4
    finally:
        stop_process(second)


def test_concurrent_applies_give_one_winner_and_a_conflict(
    control_plane: object, ebbtide_home: Path
) -> None:
    ebbtide("apply", "-f", str(SEED))
    with ControlPlaneClient(ebbtide_home) as reader:
        base = reader.get_endpoint("default", "my-model-endpoint")
    version = base["metadata"]["resourceVersion"]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def apply_with(replicas: int) -> None:
        manifest = yaml.safe_load(SEED.read_text())
        manifest["spec"]["autoscaling"]["maxReplicas"] = replicas
        manifest["metadata"]["resourceVersion"] = version
        client = ControlPlaneClient(ebbtide_home)
        barrier.wait()
        try:
            client._call("POST", "/apis/mlops.example.com/v1/apply", json={"items": [manifest]})
            outcomes.append(f"won {replicas}")
        except ConflictError:
            outcomes.append("conflict")
        finally:
            client.close()

    threads = [threading.Thread(target=apply_with, args=(n,)) for n in (3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes)[0] == "conflict"
    assert len(outcomes) == 2
    winner = int(sorted(outcomes)[1].split()[1])
    with ControlPlaneClient(ebbtide_home) as reader:
        stored = reader.get_endpoint("default", "my-model-endpoint")
    assert stored["spec"]["autoscaling"]["maxReplicas"] == winner


def test_status_updates_are_validated_and_versioned(
    control_plane: object, ebbtide_home: Path
) -> None:
    ebbtide("apply", "-f", str(SEED))
    client = ControlPlaneClient(ebbtide_home)
    current = client.get_endpoint("default", "my-model-endpoint")
    version = current["metadata"]["resourceVersion"]
    updated = client.put_status(
        "default", "my-model-endpoint", {"replicas": 2, "readyReplicas": 1}, version
    )
    assert updated["status"]["replicas"] == 2
    assert updated["metadata"]["generation"] == current["metadata"]["generation"]
    with pytest.raises(ConflictError):
        client.put_status("default", "my-model-endpoint", {"replicas": 3}, version)
    client.close()


def test_state_is_readable_by_its_owner_only(control_plane: object, ebbtide_home: Path) -> None:
    assert stat.S_IMODE(ebbtide_home.stat().st_mode) == 0o700
    for name in ("control-plane.sock", "state.db"):
        assert stat.S_IMODE((ebbtide_home / name).stat().st_mode) == 0o600, name


def test_api_errors_are_kubernetes_status_objects(
    control_plane: object, ebbtide_home: Path
) -> None:
    transport = httpx.HTTPTransport(uds=str(ebbtide_home / "control-plane.sock"))
    with httpx.Client(transport=transport, base_url="http://cp") as http:
        broken = http.post("/apis/mlops.example.com/v1/apply", content=b"{not json")
        assert broken.status_code == 422
        assert broken.json()["reason"] == "Invalid"
        assert "not valid JSON" in broken.json()["message"]
        missing = http.get("/apis/mlops.example.com/v1/namespaces/default/inferenceendpoints/nope")
        assert (missing.status_code, missing.json()["reason"]) == (404, "NotFound")
        assert "paths" in http.get("/openapi.json").json()


def test_commands_without_a_control_plane_say_how_to_start_one(ebbtide_home: Path) -> None:
    result = ebbtide("get", "ie")
    assert result.exit_code == 1
    assert "ebbtide up --detach" in result.output


def test_up_detach_and_down_leave_no_process(cli_env: dict[str, str]) -> None:
    command = [str(Path(sys.executable).parent / "ebbtide")]
    up = subprocess.run([*command, "up", "--detach"], env=cli_env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    pid = int(up.stdout.split("(pid ")[1].split(")")[0])
    try:
        again = subprocess.run(
            [*command, "up", "--detach"], env=cli_env, capture_output=True, text=True
        )
        assert again.returncode == 1
        assert "already running" in again.stderr
    finally:
        down = subprocess.run([*command, "down"], env=cli_env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert f"control plane stopped (pid {pid})" in down.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
