"""The ONNX Runtime backend through optimum (``x-compute-type: cpu+optimized``).

A model revision is exported once (``onnx_export``) and, for ``onnx-int8``,
quantized dynamically: MatMul weights only, per channel, which kept a cosine
similarity above 0.99 to PyTorch on all-MiniLM-L6-v2 (quantizing every operator
fell to about 0.94). Pipelines and generation run on optimum's ORT models;
embeddings call the ONNX session directly with numpy arrays.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from hubserve.errors import ModelLoadError

from .base import LoadSpec
from .onnx_export import ensure_export, entry_dir
from .torch_backend import TorchBackend

#: model kind -> (optimum ORT class, optimum exporter task)
_KINDS = {
    "base": ("ORTModelForFeatureExtraction", "feature-extraction"),
    "sequence-classification": ("ORTModelForSequenceClassification", "text-classification"),
    "token-classification": ("ORTModelForTokenClassification", "token-classification"),
    "question-answering": ("ORTModelForQuestionAnswering", "question-answering"),
    "masked-lm": ("ORTModelForMaskedLM", "fill-mask"),
    "seq2seq-lm": ("ORTModelForSeq2SeqLM", "text2text-generation"),
    "causal-lm": ("ORTModelForCausalLM", "text-generation"),
}
_GENERATIVE = {"seq2seq-lm", "causal-lm"}
QUANTIZED_FILE = "model_quantized.onnx"


def supports(model_type: str, model_kind: str) -> bool:
    """Whether optimum's ONNX exporter handles this architecture for this head."""
    import optimum.exporters.onnx.model_configs  # noqa: F401 - registers the ONNX configs
    from optimum.exporters.tasks import TasksManager

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(model_type, exporter="onnx",
                                                                library_name="transformers")
    except (KeyError, ValueError):
        return False
    return _KINDS[model_kind][1] in tasks


def _ort_class(model_kind: str):
    import optimum.onnxruntime as ort_models

    return getattr(ort_models, _KINDS[model_kind][0])


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
        if self.quantize and spec.model_kind in _GENERATIVE:
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
        cls = _ort_class(spec.model_kind)
        model_key = (spec.model_id or spec.path.name).replace("/", "--")
        entry = entry_dir(spec.cache_dir, model_key, spec.revision or "local", "int8" if self.quantize else "fp32")

        def build(folder) -> None:
            exported = cls.from_pretrained(spec.path, export=True, local_files_only=True, trust_remote_code=False)
            exported.save_pretrained(folder)
            if self.quantize:
                from optimum.onnxruntime import ORTQuantizer
                from optimum.onnxruntime.configuration import AutoQuantizationConfig

                config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True,
                                                            operators_to_quantize=["MatMul"])
                ORTQuantizer.from_pretrained(folder).quantize(save_dir=folder, quantization_config=config)
                (folder / "model.onnx").unlink()

        ensure_export(entry, build)
        options = ort.SessionOptions()
        if spec.threads:
            options.intra_op_num_threads = spec.threads
            options.inter_op_num_threads = 1
        kwargs = {"file_name": QUANTIZED_FILE} if self.quantize else {}
        return cls.from_pretrained(entry, session_options=options, provider=self.provider, **kwargs)

    def _build_pipeline(self):
        from optimum.onnxruntime.pipelines import pipeline

        return pipeline(self.spec.pipeline, model=self.model, tokenizer=self.tokenizer)

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

