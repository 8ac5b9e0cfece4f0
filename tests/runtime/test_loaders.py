"""Each format behind the one contract: load, signature, predict, unload, and its failures."""

from __future__ import annotations

import asyncio
import pickle
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from ebbtide.core.errors import MissingExtraError, ModelLoadError
from ebbtide.runtime.loaders import Model, create_model
from ebbtide.runtime.repository import ModelMetadata, ModelRepository
from ebbtide.runtime.server import load_model
from ebbtide.runtime.tensors import Signature, TensorSpec

IRIS_X, IRIS_Y = load_iris(return_X_y=True)


def _loaded(repo: ModelRepository, name: str, source: Path, **meta: Any) -> Model:
    location = repo.add(name, "v1", source, ModelMetadata(**meta) if meta else None)
    model = create_model(location)
    asyncio.run(model.load())
    assert model.ready
    return model


def _predict(model: Model, features: np.ndarray[Any, Any], *outputs: str) -> Any:
    wanted = outputs or model.default_outputs
    name = model.signature.inputs[0].name
    return asyncio.run(model.predict({name: features}, wanted, {}))


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    return ModelRepository(tmp_path / "repo")


@pytest.mark.parametrize("suffix", [".joblib", ".pkl"])
def test_sklearn_joblib_and_pickle(repo: ModelRepository, tmp_path: Path, suffix: str) -> None:
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(random_state=0).fit(IRIS_X, load_iris().target_names[IRIS_Y])
    source = tmp_path / f"tree{suffix}"
    if suffix == ".pkl":
        source.write_bytes(pickle.dumps(tree))
    else:
        joblib.dump(tree, source)
    model = _loaded(repo, "iris", source)
    assert model.fork_safe
    assert model.signature == Signature(
        inputs=(TensorSpec("input-0", "FP64", (-1, 4)),),
        outputs=(
            TensorSpec("predict", "BYTES", (-1,)),
            TensorSpec("predict_proba", "FP64", (-1, 3)),
        ),
    )
    assert model.default_outputs == ("predict",)
    result = _predict(model, IRIS_X[:3], "predict", "predict_proba")
    assert list(result["predict"]) == ["setosa"] * 3
    assert result["predict_proba"].shape == (3, 3)
    asyncio.run(model.unload())
    assert not model.ready


def test_sklearn_regressor_signature(repo: ModelRepository, tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    features, target = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(features, target), tmp_path / "ridge.joblib")
    model = _loaded(repo, "diabetes", tmp_path / "ridge.joblib")
    assert [s.as_json() for s in model.signature.outputs] == [
        {"name": "predict", "datatype": "FP64", "shape": [-1]}
    ]
    assert _predict(model, features[:2])["predict"].shape == (2,)


def test_a_pickle_without_predict_is_refused(repo: ModelRepository, tmp_path: Path) -> None:
    joblib.dump({"weights": [1, 2]}, tmp_path / "dict.joblib")
    with pytest.raises(ModelLoadError, match="holds a dict, which has no predict"):
        _loaded(repo, "not-a-model", tmp_path / "dict.joblib")


def test_a_corrupt_file_says_which_file(repo: ModelRepository, tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match=r"cannot load junk:v1 \(onnx\) from .*model\.onnx"):
        _loaded(repo, "junk", tmp_path / "junk.onnx")


def test_onnx_matches_the_sklearn_model_it_was_exported_from(repository: ModelRepository) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits().data[:20]
    onnx = load_model("sample-fast-onnx:v1", repository).model
    sklearn = load_model("sample-fast", repository).model
    assert not onnx.fork_safe
    assert [s.name for s in onnx.signature.outputs] == ["label", "probabilities"]
    assert onnx.signature.inputs == (TensorSpec("input-0", "FP32", (-1, 64)),)
    labels = _predict(onnx, digits.astype(np.float32), "label")["label"]
    np.testing.assert_array_equal(labels, _predict(sklearn, digits)["predict"])


def test_python_class_with_model_dir_and_parameters(repository: ModelRepository) -> None:
    model = load_model("echo", repository).model
    assert model.fork_safe
    result = asyncio.run(model.predict({"a": np.arange(3)}, ("a",), {"scale": 10}))
    np.testing.assert_array_equal(result["a"], [0, 10, 20])
    doubler = load_model("doubler", repository).model
    assert not doubler.fork_safe
    assert doubler._instance.model_dir == repository.root / "doubler" / "v1"  # type: ignore[attr-defined]


def test_python_file_needs_one_model_class(repo: ModelRepository, tmp_path: Path) -> None:
    source = tmp_path / "two.py"
    source.write_text("class A:\n    def predict(self, i, p): ...\nclass B(A): ...\n")
    with pytest.raises(ModelLoadError, match=r"one class with predict\(\) \(found: A, B\)"):
        _loaded(repo, "two", source)
    model = _loaded(repo, "two-b", source, class_name="B")
    assert type(model._instance).__name__ == "B"  # type: ignore[attr-defined]


def test_python_model_that_fails_to_load(repo: ModelRepository, tmp_path: Path) -> None:
    source = tmp_path / "broken.py"
    source.write_text("class M:\n    def load(self): raise OSError('weights missing')\n"
                      "    def predict(self, i, p): ...\n")  # fmt: skip
    with pytest.raises(ModelLoadError, match="OSError: weights missing"):
        _loaded(repo, "broken", source)


def test_xgboost_booster(repo: ModelRepository, tmp_path: Path) -> None:
    import xgboost

    booster = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
        xgboost.DMatrix(IRIS_X, label=IRIS_Y),
        num_boost_round=5,
    )
    booster.save_model(tmp_path / "iris.ubj")
    model = _loaded(repo, "xgb", tmp_path / "iris.ubj")
    assert model.signature.inputs == (TensorSpec("input-0", "FP32", (-1, 4)),)
    assert model.signature.outputs == (TensorSpec("predict", "FP32", (-1, 3)),)
    probabilities = _predict(model, IRIS_X[:5].astype(np.float32))["predict"]
    assert probabilities.argmax(axis=1).tolist() == [0] * 5


def test_lightgbm_booster(repo: ModelRepository, tmp_path: Path) -> None:
    import lightgbm

    features, target = load_diabetes(return_X_y=True)
    data = lightgbm.Dataset(features, target, params={"verbose": -1})
    booster = lightgbm.train({"verbose": -1, "num_leaves": 4}, data, num_boost_round=5)
    booster.save_model(tmp_path / "model.txt")
    model = _loaded(repo, "lgb", tmp_path / "model.txt", format="lightgbm")
    assert model.signature.outputs == (TensorSpec("predict", "FP64", (-1,)),)
    np.testing.assert_allclose(
        _predict(model, features[:4])["predict"], booster.predict(features[:4])
    )


def test_torchscript(repo: ModelRepository, tmp_path: Path) -> None:
    signature = Signature(
        inputs=(TensorSpec("x", "FP32", (-1, 2)),), outputs=(TensorSpec("y", "FP32", (-1, 2)),)
    )
    try:
        import torch
    except ImportError:
        (tmp_path / "model.pt").write_bytes(b"not loaded without torch")
        with pytest.raises(MissingExtraError, match=r"pip install 'ebbtide\[torch\]'"):
            _loaded(repo, "torch", tmp_path / "model.pt", signature=signature)
        return
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "model.pt"))
    model = _loaded(repo, "torch", tmp_path / "model.pt", signature=signature)
    result = asyncio.run(model.predict({"x": np.ones((3, 2), np.float32)}, ("y",), {}))
    assert result["y"].shape == (3, 2)


def test_torchscript_needs_a_declared_signature(repo: ModelRepository, tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="needs `inputs:` and `outputs:`"):
        _loaded(repo, "torch", tmp_path / "model.pt")


@pytest.mark.parametrize(
    ("library", "suffix", "extra"),
    [
        ("onnxruntime", ".onnx", "onnx"),
        ("xgboost", ".ubj", "xgboost"),
        ("lightgbm", ".lgb", "lightgbm"),
    ],
)
def test_a_missing_library_names_the_extra_to_install(
    repo: ModelRepository,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    library: str,
    suffix: str,
    extra: str,
) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # makes `import library` fail
    (tmp_path / f"model{suffix}").write_bytes(b"x")
    with pytest.raises(MissingExtraError, match=rf"pip install 'ebbtide\[{extra}\]'"):
        _loaded(repo, "needs-extra", tmp_path / f"model{suffix}")
