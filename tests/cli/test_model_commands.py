"""`ebbtide model add|list|show|sample`: the model repository from the command line."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest
from sklearn.datasets import load_wine
from sklearn.tree import DecisionTreeClassifier
from typer.testing import CliRunner

from ebbtide.cli.main import app

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EBBTIDE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EBBTIDE_MODEL_REPOSITORY", raising=False)
    return tmp_path / "home"


@pytest.fixture
def wine_model(tmp_path: Path) -> Path:
    features, labels = load_wine(return_X_y=True)
    path = tmp_path / "wine.joblib"
    joblib.dump(DecisionTreeClassifier(max_depth=3, random_state=0).fit(features, labels), path)
    return path


def test_add_list_and_show(home: Path, wine_model: Path) -> None:
    added = runner.invoke(
        app, ["model", "add", "wine", "v1", str(wine_model), "--description", "Wine cultivars"]
    )
    assert added.exit_code == 0, added.output
    assert "model wine:v1 added (sklearn" in added.output
    assert (home / "models" / "wine" / "v1" / "model.joblib").exists()

    listed = runner.invoke(app, ["model", "list"])
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["NAME", "VERSION", "FORMAT", "SIZE", "DESCRIPTION"]
    assert row.split()[:3] == ["wine", "v1", "sklearn"]

    shown = runner.invoke(app, ["model", "show", "wine"])
    assert shown.exit_code == 0, shown.output
    assert "Description:  Wine cultivars" in shown.output
    assert "(read from the model)" in shown.output
    assert "input    input-0         FP64       [-1, 13]" in shown.output
    assert "output   predict_proba   FP64       [-1, 3]" in shown.output


def test_add_errors_are_clear(home: Path, wine_model: Path, tmp_path: Path) -> None:
    traversal = runner.invoke(app, ["model", "add", "wine", "../v1", str(wine_model)])
    assert traversal.exit_code == 1
    assert "model version '../v1' is not allowed" in traversal.output
    runner.invoke(app, ["model", "add", "wine", "v1", str(wine_model)])
    again = runner.invoke(app, ["model", "add", "wine", "v1", str(wine_model)])
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert "--replace" in again.output
    missing = runner.invoke(app, ["model", "add", "wine", "v2", str(tmp_path / "nothing.pkl")])
    assert missing.exit_code == 1
    assert "does not exist" in missing.output
    absent = runner.invoke(app, ["model", "show", "wine:v7"])
    assert absent.exit_code == 1
    assert "model wine:v7 not found" in absent.output


def test_repository_option_and_environment(
    home: Path, wine_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    result = runner.invoke(
        app, ["model", "add", "wine", "v1", str(wine_model), "--repository", str(other)]
    )
    assert result.exit_code == 0, result.output
    assert (other / "wine" / "v1").is_dir()
    monkeypatch.setenv("EBBTIDE_MODEL_REPOSITORY", str(other))
    assert "wine" in runner.invoke(app, ["model", "list"]).output


def test_sample_registers_under_the_given_name_once(home: Path) -> None:
    first = runner.invoke(app, ["model", "sample", "fast", "--as", "my-ml-model:v1"])
    assert first.exit_code == 0, first.output
    assert "model my-ml-model:v1 trained and added (fast sample" in first.output
    second = runner.invoke(app, ["model", "sample", "fast", "--as", "my-ml-model:v1"])
    assert "already present" in second.output
    clash = runner.invoke(app, ["model", "sample", "heavy", "--as", "my-ml-model:v1"])
    assert clash.exit_code == 1
    assert "is not the heavy sample" in clash.output
    unknown = runner.invoke(app, ["model", "sample", "huge"])
    assert unknown.exit_code == 1
    assert "choose one of fast, heavy, fast-onnx" in unknown.output
