"""The sample models: trained from data bundled with scikit-learn, stored in the repository."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

from ebbtide.runtime.repository import ModelRepository
from ebbtide.runtime.samples import ensure_sample


def test_heavy_is_a_forest_that_learned_the_digits(tmp_path: Path) -> None:
    location, trained = ensure_sample("heavy", ModelRepository(tmp_path), "my-ml-model", "v1")
    assert trained
    assert location.reference == "my-ml-model:v1"
    forest = joblib.load(location.model_file)
    assert isinstance(forest, RandomForestClassifier)
    assert forest.n_estimators == 100
    digits = load_digits()
    assert np.mean(forest.predict(digits.data) == digits.target) > 0.99


def test_fast_is_accurate_and_stored_once(repository: ModelRepository) -> None:
    location, trained = ensure_sample("fast", repository)
    assert not trained  # the session fixture trained it already
    digits = load_digits()
    model = joblib.load(location.model_file)
    assert np.mean(model.predict(digits.data) == digits.target) > 0.95
