"""The model repository: layout, names that cannot escape it, resolution errors, metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ebbtide.core.errors import (
    AlreadyExistsError,
    InvalidNameError,
    ModelLoadError,
    ModelNotFoundError,
)
from ebbtide.runtime import repository as repo_module
from ebbtide.runtime.repository import ModelMetadata, ModelRepository, parse_reference
from ebbtide.spec.models import DNS1123_LABEL, ModelRef


def _model_file(tmp_path: Path, name: str = "model.joblib") -> Path:
    path = tmp_path / "source" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"not really a model")
    return path


@pytest.mark.parametrize("name", ["../etc", "a/b", "UPPER", "-x", "", "x" * 64, "..", "a\\b"])
def test_names_that_could_escape_or_break_the_repository_are_refused(name: str) -> None:
    with pytest.raises(InvalidNameError, match="is not allowed"):
        ModelRepository("/nonexistent").resolve(name, "v1")


@pytest.mark.parametrize("version", ["..", "../v1", "v1/..", ".hidden", "v 1", "v1/"])
def test_versions_that_could_escape_are_refused(version: str) -> None:
    with pytest.raises(InvalidNameError, match="is not allowed"):
        parse_reference(f"model:{version}")


def test_patterns_agree_with_the_resource_spec() -> None:
    assert repo_module.NAME_PATTERN.pattern == DNS1123_LABEL
    version_field = ModelRef.model_fields["version"]
    patterns = [getattr(m, "pattern", None) for m in version_field.metadata]
    assert repo_module.VERSION_PATTERN.pattern in patterns


def test_resolve_says_what_it_looked_for_and_where(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    with pytest.raises(ModelNotFoundError) as missing:
        repo.resolve("my-ml-model", "v1")
    assert str(tmp_path / "my-ml-model" / "v1") in str(missing.value)
    assert "ebbtide model add my-ml-model v1 PATH" in str(missing.value)
    repo.add("my-ml-model", "v1", _model_file(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"versions of 'my-ml-model' .*: v1"):
        repo.resolve("my-ml-model", "v2")


def test_add_copies_the_file_and_resolves_the_newest_version(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    for version in ("v2", "v10", "v1"):
        repo.add("digits", version, _model_file(tmp_path), ModelMetadata(description=version))
    assert repo.versions("digits") == ["v1", "v2", "v10"]
    newest = repo.resolve("digits")
    assert newest.version == "v10"
    assert newest.model_file == tmp_path / "repo" / "digits" / "v10" / "model.joblib"
    assert newest.format == "sklearn"
    assert newest.metadata.description == "v10"
    assert [loc.reference for loc in repo.all()] == ["digits:v1", "digits:v2", "digits:v10"]


def test_add_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    repo.add("digits", "v1", _model_file(tmp_path))
    with pytest.raises(AlreadyExistsError, match="--replace"):
        repo.add("digits", "v1", _model_file(tmp_path))
    onnx = _model_file(tmp_path, "exported.onnx")
    assert repo.add("digits", "v1", onnx, replace_existing=True).format == "onnx"


def test_add_refuses_a_file_of_unknown_format_and_leaves_nothing(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    with pytest.raises(ModelLoadError, match="give --format"):
        repo.add("digits", "v1", _model_file(tmp_path, "weights.bin"))
    assert repo.names() == []
    located = repo.add("digits", "v1", _model_file(tmp_path, "w.json"), ModelMetadata("xgboost"))
    assert located.format == "xgboost"
    assert located.model_file.name == "model.json"


def test_a_folder_with_metadata_is_added_whole(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "weights.txt").write_text("tree")
    (folder / "metadata.yaml").write_text(
        yaml.safe_dump(
            {
                "format": "lightgbm",
                "file": "weights.txt",
                "description": "a booster",
                "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
                "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
            }
        )
    )
    location = ModelRepository(tmp_path / "repo").add("booster", "2024.1", folder)
    assert location.format == "lightgbm"
    assert location.model_file.name == "weights.txt"
    assert location.metadata.signature is not None
    assert location.metadata.signature.inputs[0].shape == (-1, 4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"format": "tensorflow"}, "format 'tensorflow' is unknown"),
        ({"colour": "red"}, "unknown field"),
        ({"inputs": [{"name": "x", "datatype": "FLOAT"}]}, "unknown datatype 'FLOAT'"),
        ({"file": "../../etc/passwd"}, "is outside"),
    ],
)
def test_bad_metadata_is_reported_with_its_file(
    tmp_path: Path, content: dict[str, object], message: str
) -> None:
    folder = tmp_path / "repo" / "m" / "v1"
    folder.mkdir(parents=True)
    (folder / "model.joblib").write_bytes(b"x")
    (folder / "metadata.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(ModelLoadError, match=message):
        ModelRepository(tmp_path / "repo").resolve("m", "v1")


def test_two_model_files_need_the_metadata_to_choose(tmp_path: Path) -> None:
    folder = tmp_path / "repo" / "m" / "v1"
    folder.mkdir(parents=True)
    (folder / "model.joblib").write_bytes(b"x")
    (folder / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"exactly one model\.\* file"):
        ModelRepository(tmp_path / "repo").resolve("m", "v1")


def test_the_default_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(repo_module.REPOSITORY_ENV, raising=False)
    monkeypatch.setenv("EBBTIDE_HOME", str(tmp_path / "home"))
    assert ModelRepository().root == tmp_path / "home" / "models"
    monkeypatch.setenv(repo_module.REPOSITORY_ENV, str(tmp_path / "elsewhere"))
    assert ModelRepository().root == tmp_path / "elsewhere"
