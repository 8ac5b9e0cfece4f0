"""Doubles its input, slowly enough that concurrent requests queue into batches; raises on a
negative value (a model that fails on some inputs)."""

import time


class Doubler:
    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.calls = 0

    def predict(self, inputs, parameters):
        features = inputs["x"]
        if (features < 0).any():
            raise ValueError("negative values are not allowed")
        self.calls += 1
        time.sleep(0.01)
        return {"y": features * 2, "rows": features[:, :1] * 0 + len(features)}
