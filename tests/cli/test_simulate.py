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


def _write_traces(directory: Path) -> None:
    directory.mkdir()
    for name, per_minute in (("conv", 30), ("code", 10)):
        rows = [
            f"2023-11-16 18:{m:02d}:{s:02d}.{m * 7 % 10}000000"
            for m in range(20)
            for s in range(0, 60, 60 // per_minute)
        ]
        (directory / f"AzureLLMInferenceTrace_{name}.csv").write_text(
            "TIMESTAMP\n" + "\n".join(rows)
        )


def test_simulate_sweep_prints_totals_standings_and_a_heat_map(tmp_path: Path) -> None:
    traces, png, saved = tmp_path / "traces", tmp_path / "heat.png", tmp_path / "sweep.json"
    _write_traces(traces)
    result = runner.invoke(
        app,
        ["simulate", "--sweep", "--grid", "small", "--traces", str(traces), "--plot", str(png),
         "--save", str(saved)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "grid: 16 cells (conv, code, spike, diurnal;" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("POLICY"))
    assert header.split()[:3] == ["POLICY", "OVER-OBJECTIVE", "CELLS-MEETING"]
    for rival in ("hpa", "knative-kpa", "ray-serve"):
        assert any(
            line.startswith(rival) and "/16 (" in line for line in result.output.splitlines()
        )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"cells"' in saved.read_text()


def test_simulate_sweep_writes_csv_per_cell(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    _write_traces(traces)
    result = runner.invoke(
        app, ["simulate", "--sweep", "--traces", str(traces), "-o", "csv", "--no-plot"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("[")]
    assert lines[0].startswith("workload,speedup,rate_scale,cpu_ms,start_time,seed,requests,")
    assert len(lines) == 17


def test_simulate_sweep_names_missing_traces_and_bad_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--sweep", "--traces", str(tmp_path), "--no-plot"])
    assert result.exit_code == 1
    assert "pass --traces DIR" in result.output
    result = runner.invoke(app, ["simulate", "--sweep", "--grid", "huge", "--no-plot"])
    assert result.exit_code == 1
    assert "--grid 'huge': choose small or full" in result.output
    result = runner.invoke(app, ["simulate", "--sweep", "-o", "xml", "--no-plot"])
    assert "-o 'xml': choose table, json, csv" in result.output
    result = runner.invoke(app, ["simulate", "--sweep", "--tradeoff", "--no-plot"])
    assert "choose one of --sweep and --tradeoff" in result.output


def test_simulate_tradeoff_prints_a_curve_per_policy(tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    result = runner.invoke(
        app,
        ["simulate", "--tradeoff", "--shape", "spike", "--rate", "30", "--duration", "90",
         "--plot", str(png)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    policies = [line.split()[0] for line in result.output.splitlines() if "x" in line[-6:]]
    assert {"ebbtide", "hpa", "knative-kpa", "ray-serve", "oracle"} <= set(policies)
    assert "80 (default)" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
