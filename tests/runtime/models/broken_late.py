"""A model that fails to load after a second: requests held for it meanwhile get the reason."""

import time


class BrokenLate:
    def load(self):
        time.sleep(1.0)
        raise FileNotFoundError("weights.bin is missing")

    def predict(self, inputs, parameters):
        return inputs
