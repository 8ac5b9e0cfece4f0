"""The same joblib model behind KServe's model server, for `bench/overload.py`.

KServe is no dependency of ebbtide: run this with an interpreter from a separate environment
that has `kserve` and the same scikit-learn version installed, for example
`uv venv /tmp/kserve-venv && uv pip install --python /tmp/kserve-venv/bin/python kserve
scikit-learn==<the project's>`.

Run: `/tmp/kserve-venv/bin/python bench/servers/kserve.py MODEL_FILE NAME PORT`.
"""

import logging
import sys
from typing import Any

import joblib
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class JoblibModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, model_file: str) -> None:
        super().__init__(name)
        self.estimator = joblib.load(model_file)
        self.ready = True

    def predict(self, payload: InferRequest, headers: Any = None) -> InferResponse:
        labels = self.estimator.predict(payload.inputs[0].as_numpy())
        output = InferOutput(name="predict", shape=list(labels.shape), datatype="INT64",
                             data=labels.tolist())  # fmt: skip
        answer_id = payload.id or ""
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=answer_id)


class Quiet(logging.Filter):
    """Drops per-request log lines (the other servers log none either)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


if __name__ == "__main__":
    model_file, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for handler_owner in ("uvicorn.access", "kserve.trace", "kserve", ""):
        logging.getLogger(handler_owner).addFilter(Quiet())
    ModelServer(http_port=port, enable_grpc=False, enable_latency_logging=False).start(
        [JoblibModel(name, model_file)]
    )
