"""Loads in about a second and answers after 0.2 s: for readiness and draining."""

import asyncio
import time


class Slow:
    def load(self):
        time.sleep(1.0)

    async def predict(self, inputs, parameters):
        await asyncio.sleep(0.2)
        return {"y": inputs["x"] + 1}
