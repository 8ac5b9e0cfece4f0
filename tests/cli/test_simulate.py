"""`ebbtide simulate` end to end: a table, a plot, and clear errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ebbtide.cli.main import app

runner = CliRunner()


def test_simulate_prints_the_table_and_writes_the_plot(tmp_path: Path) -> None:
    png = tmp_path / "sim.png"
    result = runner.invoke(
        app,
        ["simulate", "--shape", "spike", "--rate", "30", "--duration", "90", "--plot", str(png)],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("POLICY"))
    assert header.split() == [
        "POLICY", "OVER-OBJECTIVE", "DROPPED", "TIMED-OUT", "P50", "P99",
        "REPLICA-SECONDS", "VS-ORACLE", "ACTIONS", "PEAK",
    ]  # fmt: skip
    rows = {line.split()[0] for line in lines[lines.index(header) + 1 :] if line.strip()}
    assert {"ebbtide", "hpa", "knative-kpa", "ray-serve", "oracle"} <= rows
    assert "workload: spike 30/s x10" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_a_trace_with_an_endpoint_file(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "TIMESTAMP\n"
        + "\n".join(f"2023-11-16 18:{m:02d}:{s:02d}" for m in range(2) for s in range(60))
    )
    endpoint = tmp_path / "ie.yaml"
    endpoint.write_text(
        "apiVersion: mlops.example.com/v1\nkind: InferenceEndpoint\nmetadata: {name: m}\n"
        "spec:\n  model: {name: m, version: v1}\n"
        "  autoscaling: {minReplicas: 1, maxReplicas: 4, targetCPUUtilizationPercentage: 60}\n"
        "  resources: {requests: {cpu: '1'}}\n"
    )
    result = runner.invoke(
        app,
        ["simulate", "--trace", str(trace), "--rate-scale", "20", "-f", str(endpoint),
         "--policies", "ebbtide,hpa", "--no-plot"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "endpoint: m, 1..4 replicas, target cpu 60%" in result.output
    assert "x10 time, x20 rate" in result.output


def test_simulate_needs_a_trace_or_a_shape() -> None:
    result = runner.invoke(app, ["simulate", "--no-plot"])
    assert result.exit_code == 1
    assert "give either --trace FILE or --shape" in result.output


def test_simulate_names_an_unknown_policy() -> None:
    result = runner.invoke(app, ["simulate", "--shape", "ramp", "--policies", "magic", "--no-plot"])
    assert result.exit_code == 1
    assert "unknown policy 'magic'" in result.output
