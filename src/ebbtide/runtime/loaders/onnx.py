"""ONNX models run by onnxruntime (`model.onnx`; extra `ebbtide[onnx]`).

The signature comes from the graph. A session runs `parameters.threads` intra-op threads
(default 1: a replica is sized in cores, and more replicas scale better than more threads).
Not fork-safe: an onnxruntime session owns thread pools, which a forked child does not get.
Export classifiers without ZipMap (`options={"zipmap": False}` in skl2onnx) so that
probabilities are a tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ebbtide.core.errors import ModelLoadError
from ebbtide.runtime.loaders.base import Arrays, Model, import_extra, load_failed
from ebbtide.runtime.tensors import Signature, TensorSpec

ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class OnnxModel(Model):
    format = "onnx"
    fork_safe = False
    blocking = True

    def _load(self) -> None:
        runtime = import_extra("onnxruntime", "onnx", self.format)
        options = runtime.SessionOptions()
        options.intra_op_num_threads = int(self._parameter("threads", 1))
        options.inter_op_num_threads = 1
        try:
            self._session = runtime.InferenceSession(
                str(self.location.model_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise load_failed(self.location, error) from error
        graph = Signature(
            inputs=tuple(self._spec(node) for node in self._session.get_inputs()),
            outputs=tuple(self._spec(node) for node in self._session.get_outputs()),
        )
        self.signature = Signature(
            inputs=self.signature.inputs or graph.inputs,
            outputs=self.signature.outputs or graph.outputs,
        )

    def _spec(self, node: Any) -> TensorSpec:
        datatype = ONNX_TYPES.get(node.type)
        if datatype is None:
            raise ModelLoadError(
                f"{self.location.reference}: {node.name!r} has type {node.type}, not a tensor; "
                "export classifiers without ZipMap (skl2onnx: options={'zipmap': False})"
            )
        shape = tuple(dim if isinstance(dim, int) else -1 for dim in node.shape)
        return TensorSpec(node.name, datatype, shape)

    def predict_now(
        self, inputs: Arrays, outputs: Sequence[str], parameters: Mapping[str, Any]
    ) -> Arrays:
        results = self._session.run(list(outputs), inputs)
        return dict(zip(outputs, results, strict=True))

    async def unload(self) -> None:
        self._session = None
        await super().unload()
