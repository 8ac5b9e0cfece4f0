"""The plain reference server: Starlette + uvicorn serving one joblib or ONNX model.

The simplest server a user would write by hand, kept as small as the job allows, so that the
replica's start and speed can be compared against it. It answers the v2 JSON inference
request on `POST /v2/models/{name}/infer`. When it has started it prints one line to stdout
with the monotonic time of each step of its start (`phases imported=... loaded=...
listening=...`), which `bench/cold_start.py` reads.

Run: `python bench/servers/plain.py MODEL_FILE sklearn|onnx PORT`.
"""

import time

began = time.monotonic()

import contextlib  # noqa: E402
import sys  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402

import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

imported = time.monotonic()
model_file, model_format, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

if model_format == "onnx":
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_file, options)

    def predict(rows: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
        return session.run(["label"], {"input-0": rows.astype(np.float32)})[0]  # type: ignore[no-any-return]
else:
    import joblib

    predict = joblib.load(model_file).predict
loaded = time.monotonic()


async def infer(request: Request) -> JSONResponse:
    body = await request.json()
    tensor = body["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    labels = predict(rows)
    output = {"name": "predict", "datatype": "INT64", "shape": list(labels.shape),
              "data": labels.tolist()}  # fmt: skip
    return JSONResponse({"model_name": request.path_params["name"], "outputs": [output]})


@contextlib.asynccontextmanager
async def started(app: Starlette) -> AsyncIterator[None]:
    listening = time.monotonic()
    print(f"phases began={began} imported={imported} loaded={loaded} listening={listening}",
          flush=True)  # fmt: skip
    yield


app = Starlette(
    routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"])], lifespan=started
)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
