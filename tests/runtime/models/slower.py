"""Loads in three seconds: room for a held request to time out well before the model is ready,
even on a busy machine."""

import time


class Slower:
    def load(self):
        time.sleep(3.0)

    async def predict(self, inputs, parameters):
        return {"y": inputs["x"] + 1}
