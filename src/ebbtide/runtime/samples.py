"""Sample models trained on first use from data that ships inside scikit-learn (no downloads).

Both learn handwritten digits (`load_digits`: 8x8 images, 64 features, 10 classes):

- `fast`: standard scaling + logistic regression, a fraction of a millisecond per request.
- `heavy`: a 100-tree random forest, about 7-8 ms of CPU per single-row request, so one
  replica saturates a core at around a hundred requests per second (docs/benchmarks.md). Most
  of that time is scikit-learn's per-tree dispatch in Python, which grew about threefold in
  scikit-learn 1.9; the tree count is set for the current release.
- `fast-onnx`: the fast model exported to ONNX (needs `ebbtide[onnx]`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebbtide.core.errors import InvalidNameError, ModelNotFoundError
from ebbtide.runtime.repository import ModelLocation, ModelMetadata, ModelRepository

FEATURES = 64
SEED = 0


@dataclass(frozen=True)
class Sample:
    """A sample model: how to train it and where it goes by default."""

    kind: str
    description: str
    file_name: str
    train: Callable[[Path], None]

    @property
    def default_name(self) -> str:
        return f"sample-{self.kind}"


def _digits() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return features, labels


def _fast_estimator() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = _digits()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features, labels)


def _train_fast(target: Path) -> None:
    import joblib

    joblib.dump(_fast_estimator(), target)


def _train_heavy(target: Path) -> None:
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    features, labels = _digits()
    forest = RandomForestClassifier(n_estimators=100, random_state=SEED).fit(features, labels)
    joblib.dump(forest, target)


def _train_fast_onnx(target: Path) -> None:
    from ebbtide.runtime.loaders.base import import_extra

    skl2onnx = import_extra("skl2onnx", "onnx", "onnx")
    data_types = import_extra("skl2onnx.common.data_types", "onnx", "onnx")
    estimator = _fast_estimator()
    graph = skl2onnx.convert_sklearn(
        estimator,
        initial_types=[("input-0", data_types.FloatTensorType([None, FEATURES]))],
        options={id(estimator): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    _rename_input(graph, "input-0")
    target.write_bytes(graph.SerializeToString())


def _rename_input(graph: Any, name: str) -> None:
    """skl2onnx turns `input-0` into `input_0`; keep the sklearn model's name so that one
    request body works for both."""
    old = graph.graph.input[0].name
    graph.graph.input[0].name = name
    for node in graph.graph.node:
        for index, value in enumerate(node.input):
            if value == old:
                node.input[index] = name


SAMPLES = {
    sample.kind: sample
    for sample in (
        Sample(
            "fast",
            "Digits (load_digits): standard scaling + logistic regression. Input: 64 pixel "
            "intensities 0-16 per row; output: the digit.",
            "model.joblib",
            _train_fast,
        ),
        Sample(
            "heavy",
            "Digits (load_digits): 100-tree random forest, CPU-heavy (about 7-8 ms per row). "
            "Input: 64 pixel intensities 0-16 per row; output: the digit.",
            "model.joblib",
            _train_heavy,
        ),
        Sample(
            "fast-onnx",
            "The fast digits model exported to ONNX. Input: 64 FP32 pixel intensities per row; "
            "outputs: label and probabilities.",
            "model.onnx",
            _train_fast_onnx,
        ),
    )
}


def sample(kind: str) -> Sample:
    try:
        return SAMPLES[kind]
    except KeyError:
        raise ModelNotFoundError(
            f"no sample model {kind!r}; choose one of {', '.join(SAMPLES)}"
        ) from None


def ensure_sample(
    kind: str,
    repository: ModelRepository,
    name: str | None = None,
    version: str = "v1",
    replace_existing: bool = False,
) -> tuple[ModelLocation, bool]:
    """Train the sample and store it as `name:version`, unless it is there already.
    Returns the location and whether it was trained now."""
    chosen = sample(kind)
    name = name or chosen.default_name
    if not replace_existing and version in repository.versions(name):
        location = repository.resolve(name, version)
        if location.metadata.description != chosen.description:
            raise InvalidNameError(
                f"{name}:{version} already exists and is not the {kind} sample; choose another "
                "--as NAME:VERSION or pass --replace"
            )
        return location, False
    with tempfile.TemporaryDirectory(prefix="ebbtide-sample-") as scratch:
        model_file = Path(scratch) / chosen.file_name
        chosen.train(model_file)
        metadata = ModelMetadata(description=chosen.description)
        location = repository.add(name, version, model_file, metadata, replace_existing=True)
    return location, True
