"""A real replica process driven by tritonclient in pure JSON, and by plain HTTP for the rest."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

from ebbtide.runtime.repository import ModelRepository
from tests.runtime.replicas import Replica

pytestmark = pytest.mark.integration
DIGITS = load_digits().data
MODEL = "sample-fast"


@pytest.fixture(scope="module")
def client(fast_replica: Replica) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=fast_replica.address)
    yield client
    client.close()


def _input(rows: np.ndarray[Any, Any], name: str = "input-0", datatype: str = "FP64") -> Any:
    tensor = triton.InferInput(name, list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=False)
    return tensor


def _outputs(*names: str) -> list[Any]:
    return [triton.InferRequestedOutput(name, binary_data=False) for name in names]


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "v1")
    assert client.get_server_metadata()["name"] == "ebbtide"
    metadata = client.get_model_metadata(MODEL, "v1")
    assert metadata["versions"] == ["v1"]
    assert metadata["platform"] == "sklearn"
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 64]}]
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]
    assert client.get_model_metadata(MODEL) == metadata


def test_infer_with_and_without_version_echoes_the_id(
    client: triton.InferenceServerClient, repository: ModelRepository
) -> None:
    from ebbtide.runtime.server import load_model

    expected = load_model(MODEL, repository).model._estimator.predict(DIGITS[:5])  # type: ignore[attr-defined]
    for version in ("v1", ""):
        result = client.infer(MODEL, [_input(DIGITS[:5])], model_version=version, request_id="r-7")
        assert result.get_response()["id"] == "r-7"
        assert result.get_response()["model_version"] == "v1"
        np.testing.assert_array_equal(result.as_numpy("predict"), expected)
        assert result.as_numpy("predict_proba") is None


def test_requested_outputs_are_honoured_and_unknown_parameters_ignored(
    client: triton.InferenceServerClient,
) -> None:
    result = client.infer(
        MODEL,
        [_input(DIGITS[:2])],
        outputs=_outputs("predict_proba"),
        parameters={"unheard_of": "value"},
    )
    assert result.as_numpy("predict") is None
    probabilities = result.as_numpy("predict_proba")
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_a_request_without_content_type_and_with_nested_data(fast_replica: Replica) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [2, 64], "datatype": "FP64",
                        "data": DIGITS[:2].tolist()}]}  # fmt: skip
    import json

    response = fast_replica.post(
        f"/v2/models/{MODEL}/versions/v1/infer",
        content=json.dumps(body).encode(),
        headers={"content-type": ""},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [2]


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        ({"inputs": [{"name": "input-0", "shape": [1, 63], "datatype": "FP64",
                      "data": [0] * 63}]}, 400, r"shape \[1, 63\] does not match"),
        ({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "BYTES",
                      "data": ["a"] * 64}]}, 400, "cannot be used as the model's FP64"),
        ({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP64",
                      "data": [0] * 64}]}, 400, "unknown input 'pixels'"),
        ({"inputs": []}, 400, '"inputs"'),
        ({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64",
                      "data": [0] * 64}], "outputs": [{"name": "logits"}]},
         400, "unknown output 'logits'"),
    ],
)  # fmt: skip
def test_bad_input_is_400_with_a_clear_message(
    fast_replica: Replica, request_args: dict[str, Any], status: int, message: str
) -> None:
    response = fast_replica.post(f"/v2/models/{MODEL}/infer", json=request_args)
    assert response.status_code == status
    assert set(response.json()) == {"error"}
    assert pytest.approx(0) == 0
    import re

    assert re.search(message, response.json()["error"]), response.json()


def test_binary_tensor_data_is_refused_with_the_fix(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input-0", [1, 64], "FP64")
    tensor.set_data_from_numpy(DIGITS[:1], binary_data=True)
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [tensor])
    assert error.value.status() == "400"
    assert "binary_data=False" in error.value.message()


def test_missing_input_via_tritonclient(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [_input(DIGITS[:1], name="other")])
    assert error.value.status() == "400"


def test_unknown_models_and_versions_are_404(client: triton.InferenceServerClient) -> None:
    for model, version in (("nope", ""), (MODEL, "v9")):
        with pytest.raises(InferenceServerException) as error:
            client.infer(model, [_input(DIGITS[:1])], model_version=version)
        assert error.value.status() == "404"
        assert "this server serves" in error.value.message()


def test_not_json_and_wrong_method_and_unknown_path(fast_replica: Replica) -> None:
    assert fast_replica.post(f"/v2/models/{MODEL}/infer", content=b"{oops").status_code == 400
    wrong = fast_replica.get(f"/v2/models/{MODEL}/infer")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert fast_replica.get("/v3/anything").status_code == 404


def test_json_nested_100000_deep_is_a_400_that_says_so(
    repository: ModelRepository, logs: Path
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # 200 kB: within the default body limit
    in_data = b'{"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64", "data": '
    under_the_limit = b"[" * 900 + b"1" + b"]" * 900
    with Replica(repository.root, "sample-fast:v1", logs) as replica:
        for path in (f"/v2/models/{MODEL}/infer", f"/v1/models/{MODEL}:predict"):
            for body in (deep, in_data + deep + b"}]}", b'{"instances": ' + deep + b"}"):
                response = replica.post(path, content=body)
                assert response.status_code == 400, response.text
                assert "nests JSON arrays or objects too deeply" in response.json()["error"]
            response = replica.post(path, content=in_data + under_the_limit + b"}]}")
            assert response.status_code == 400, response.text
        body = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64",
                            "data": DIGITS[0].tolist()}]}  # fmt: skip
        assert replica.post(f"/v2/models/{MODEL}/infer", json=body).status_code == 200
        assert "RecursionError" not in replica.log()


def test_a_body_over_the_limit_is_413(fast_replica: Replica) -> None:
    rows = np.zeros((400, 64))
    body = {"inputs": [{"name": "input-0", "shape": [400, 64], "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}  # fmt: skip
    response = fast_replica.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 413
    assert "--max-body-bytes" in response.json()["error"]
    chunks = (b'{"inputs": [' + b" " * 60_000, b" " * 60_000 + b"]}")
    response = fast_replica.post(f"/v2/models/{MODEL}/infer", content=iter(chunks))
    assert response.status_code == 413


def test_kserve_v1(fast_replica: Replica) -> None:
    assert fast_replica.get(f"/v1/models/{MODEL}").json() == {"name": MODEL, "ready": True}
    assert fast_replica.get("/v1/models").json() == {"models": [MODEL]}
    v2 = fast_replica.post(
        f"/v2/models/{MODEL}/infer",
        json={"inputs": [{"name": "input-0", "shape": [3, 64], "datatype": "FP64",
                          "data": DIGITS[:3].ravel().tolist()}]},
    ).json()["outputs"][0]["data"]  # fmt: skip
    for key in ("instances", "inputs"):
        response = fast_replica.post(f"/v1/models/{MODEL}:predict", json={key: DIGITS[:3].tolist()})
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": v2}
    columns = {"inputs": {"input-0": DIGITS[:3].tolist()}}
    assert (
        fast_replica.post(f"/v1/models/{MODEL}:predict", json=columns).json()["predictions"] == v2
    )
    bad = fast_replica.post(f"/v1/models/{MODEL}:predict", json={"instances": [[1, 2]]})
    assert bad.status_code == 400
    assert (
        fast_replica.post("/v1/models/nope:predict", json={"instances": [[1]]}).status_code == 404
    )


def test_metrics(fast_replica: Replica, client: triton.InferenceServerClient) -> None:
    client.infer(MODEL, [_input(DIGITS[:1])])
    text = fast_replica.get("/metrics").text
    assert (
        'ebbtide_requests_total{code="200",model="sample-fast",route="infer",version="v1"}' in text
    )
    assert 'ebbtide_requests_total{code="404"' in text
    assert "ebbtide_request_duration_seconds_bucket" in text
    assert 'ebbtide_requests_in_flight{model="sample-fast",version="v1"} 0.0' in text
    assert 'ebbtide_model_ready{model="sample-fast",version="v1"} 1.0' in text
    load_line = next(line for line in text.splitlines() if line.startswith("ebbtide_model_load_s"))
    assert float(load_line.split()[-1]) > 0
    assert "process_resident_memory_bytes" in text


def test_every_datatype_through_tritonclient(repository: ModelRepository, logs: Path) -> None:
    values = {
        "BOOL": np.array([[True, False]]),
        "INT8": np.array([[-128, 127]], np.int8),
        "INT16": np.array([[-3, 3]], np.int16),
        "INT32": np.array([[-3, 2**31 - 1]], np.int32),
        "INT64": np.array([[-(2**63), 2**63 - 1]], np.int64),
        "UINT8": np.array([[0, 255]], np.uint8),
        "UINT16": np.array([[0, 65535]], np.uint16),
        "UINT32": np.array([[0, 2**32 - 1]], np.uint32),
        "UINT64": np.array([[0, 2**64 - 1]], np.uint64),
        "FP16": np.array([[0.5, -2.0]], np.float16),
        "FP32": np.array([[0.25, 1e10]], np.float32),
        "FP64": np.array([[0.1, -1e300]], np.float64),
        "BYTES": np.array([[b"ab", "é".encode()]], dtype=object),
    }
    with Replica(repository.root, "echo", logs) as replica:
        client = triton.InferenceServerClient(url=replica.address)
        inputs = [_input(array, name, datatype) for datatype, array in values.items()
                  for name in (datatype.lower(),)]  # fmt: skip
        result = client.infer("echo", inputs)
        for datatype, array in values.items():
            returned = result.as_numpy(datatype.lower())
            assert result.get_output(datatype.lower())["datatype"] == datatype
            if datatype == "BYTES":  # JSON carries BYTES as text
                array = np.vectorize(lambda b: b.decode(), otypes=[object])(array)
            np.testing.assert_array_equal(returned, array)
        scaled = client.infer("echo", [_input(values["FP64"], "x")], parameters={"scale": 10})
        np.testing.assert_allclose(scaled.as_numpy("x"), values["FP64"] * 10)
        client.close()


def test_a_model_that_raises_is_500_and_the_server_survives(
    repository: ModelRepository, logs: Path
) -> None:
    with Replica(repository.root, "doubler", logs, "--max-batch-size", "16") as replica:
        client = triton.InferenceServerClient(url=replica.address, concurrency=8)

        rows = [1, 2, -1, 3, 4, 5, -2, 6] * 4
        pending = [
            client.async_infer("doubler", [_input(np.full((1, 3), float(row)), "x")])
            for row in rows
        ]
        results: list[Any] = []
        for request in pending:
            try:
                results.append(request.get_result().as_numpy("y"))
            except InferenceServerException as error:
                results.append(error)
        for row, result in zip(rows, results, strict=True):
            if row < 0:
                assert isinstance(result, InferenceServerException)
                assert result.status() == "500"
                assert "ValueError: negative values are not allowed" in result.message()
            else:
                np.testing.assert_array_equal(result, np.full((1, 3), row * 2.0))
        assert client.is_server_live()
        assert client.is_server_ready()
        batches = replica.get("/metrics").text
        assert "ebbtide_batch_size_count" in batches
        client.close()


def test_batched_results_equal_unbatched(fast_replica: Replica, batched_replica: Replica) -> None:
    rows = [DIGITS[i : i + 1 + i % 3] for i in range(0, 96, 2)]

    def infer(replica: Replica, features: np.ndarray[Any, Any]) -> dict[str, Any]:
        body = {"inputs": [{"name": "input-0", "shape": list(features.shape), "datatype": "FP64",
                            "data": features.ravel().tolist()}],
                "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}  # fmt: skip
        response = replica.post(f"/v2/models/{MODEL}/infer", json=body)
        assert response.status_code == 200, response.text
        return {o["name"]: o["data"] for o in response.json()["outputs"]}

    with ThreadPoolExecutor(16) as pool:
        batched = list(pool.map(lambda r: infer(batched_replica, r), rows))
    unbatched = [infer(fast_replica, r) for r in rows]
    assert [b["predict"] for b in batched] == [u["predict"] for u in unbatched]
    for b, u in zip(batched, unbatched, strict=True):
        np.testing.assert_allclose(b["predict_proba"], u["predict_proba"], rtol=1e-12, atol=0)
    metrics = batched_replica.get("/metrics").text
    count = _metric(metrics, "ebbtide_batch_size_count")
    total = _metric(metrics, "ebbtide_batch_size_sum")
    assert total == sum(len(r) for r in rows)
    assert count <= len(rows)


def test_requests_arriving_while_the_model_runs_are_merged(
    repository: ModelRepository, logs: Path
) -> None:
    # The slow model holds each call for 0.2 s, so requests sent together must pile up behind
    # the first call and share the next one, whatever the machine's speed.
    args = ("--max-batch-size", "16", "--max-latency-ms", "50")
    with Replica(repository.root, "slow", logs, *args) as replica:

        def infer(value: float) -> list[float]:
            body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [value]}]}
            response = replica.post("/v2/models/slow/infer", json=body)
            assert response.status_code == 200, response.text
            return list(response.json()["outputs"][0]["data"])

        values = [float(v) for v in range(8)]
        with ThreadPoolExecutor(len(values)) as pool:
            answers = list(pool.map(infer, values))
        assert answers == [[v + 1] for v in values]
        metrics = replica.get("/metrics").text
        assert _metric(metrics, "ebbtide_batch_size_sum") == len(values)
        assert _metric(metrics, "ebbtide_batch_size_count") < len(values), "nothing was merged"


def _metric(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name)).split()[-1])
