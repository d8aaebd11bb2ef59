"""The ONNX Runtime backend through optimum (``x-compute-type: cpu+optimized``).

A model revision is exported once (``onnx_export``) and, for ``onnx-int8``,
quantized dynamically: MatMul weights only, per channel, which kept a cosine
similarity above 0.99 to PyTorch on all-MiniLM-L6-v2 (quantizing every operator
fell to about 0.94). Pipelines and generation run on optimum's ORT models;
embeddings call the ONNX session directly with numpy arrays (on the CPU, the
embedding tasks use ``ort_embedder`` instead, which needs no torch).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from hubserve.errors import ModelLoadError

from .base import LoadSpec
from .onnx_export import QUANTIZED_FILE, ensure_export, entry_dir, export_model, export_revision, ort_class
from .torch_backend import TorchBackend


class OnnxBackend(TorchBackend):
    """Runs an exported model with ONNX Runtime.

    Args:
        quantize: load the int8 (dynamic, MatMul, per-channel) export.
    """

    def __init__(self, quantize: bool = False) -> None:
        super().__init__()
        self.quantize = quantize
        self.compute_type = "cpu+optimized"
        self.provider = "CPUExecutionProvider"

    def load(self, spec: LoadSpec) -> None:
        if spec.head.ort_class is None:
            raise ModelLoadError(f"the {spec.head.name} head has no ONNX export; run it on backend torch")
        if self.quantize and spec.head.generative:
            raise ModelLoadError("backend onnx-int8 quantizes encoder models; run generation models on onnx or torch")
        if spec.cache_dir is None:
            raise ModelLoadError("the onnx backends need a cache folder for their exports")
        if spec.dtype != "float32":
            raise ModelLoadError(f"dtype {spec.dtype} is for the torch backend; ONNX models run in float32 or int8")
        if spec.device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelLoadError("device `cuda` was configured, but ONNX Runtime has no CUDAExecutionProvider here")
            self.provider = "CUDAExecutionProvider"
        super().load(spec)
        if spec.device == "cuda":
            self.compute_type = "gpu"

    def _load_model(self, spec: LoadSpec):
        cls = ort_class(spec.head.ort_class)
        entry = entry_dir(spec.cache_dir, export_revision(spec), spec.head, self.quantize)
        ensure_export(entry, lambda folder: export_model(spec.path, folder, spec.head.ort_class, self.quantize))
        options = ort.SessionOptions()
        if spec.threads:
            options.intra_op_num_threads = spec.threads
            options.inter_op_num_threads = 1
        kwargs = {"file_name": QUANTIZED_FILE} if self.quantize else {}
        return cls.from_pretrained(entry, session_options=options, provider=self.provider, **kwargs)

    def _build_pipeline(self):
        from optimum.onnxruntime.pipelines import pipeline

        return pipeline(self.spec.pipeline, model=self.model, **self.preprocessors)

    def _hidden_states(self, enc: dict) -> np.ndarray:
        session = self.model.session
        feeds = {}
        for node in session.get_inputs():
            if node.name in enc:
                feeds[node.name] = enc[node.name].numpy().astype(np.int64)
            elif node.name == "token_type_ids":
                feeds[node.name] = np.zeros_like(enc["input_ids"].numpy(), dtype=np.int64)
        names = [o.name for o in session.get_outputs()]
        output = "last_hidden_state" if "last_hidden_state" in names else names[0]
        return session.run([output], feeds)[0].astype(np.float32, copy=False)

