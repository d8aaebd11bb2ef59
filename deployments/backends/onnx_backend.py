"""The ONNX Runtime backend (``x-compute-type: cpu+optimized``).

A model revision is exported once per head, in a child process (``onnx_export.run_export``,
``onnx_build``), and held to the fidelity gate. The replica then loads the model with
transformers as the torch backend does (config, generation config, processors), and the
head's family (``onnx_export.FAMILIES``) puts the export's ONNX Runtime sessions in place of
its forward passes and frees the torch weights they replace: transformers' pipelines and
``generate`` run unchanged, on ONNX Runtime. ``onnx`` serves the float32 graphs, ``onnx-int8``
the int8 ones (dynamic, MatMul weights, per channel), ``auto`` the fastest that passed the
gate. A model whose export is refused raises ``ExportUnsupported`` and serves on torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hubserve.errors import ModelLoadError

from .base import LoadSpec
from .onnx_export import FAMILIES, entry_dir, export_revision, open_sessions, run_export, served_variant
from .torch_backend import TorchBackend


class OnnxBackend(TorchBackend):
    """Runs a model's forward passes on its ONNX export.

    Args:
        variant: the configured backend: ``auto``, ``onnx`` or ``onnx-int8``.
    """

    def __init__(self, variant: str = "auto") -> None:
        super().__init__()
        self.variant = variant
        self.compute_type = "cpu+optimized"
        self.figures: dict = {}

    def load(self, spec: LoadSpec) -> None:
        if spec.head.onnx not in FAMILIES:
            raise ModelLoadError(f"the {spec.head.name} head has no ONNX export; run it on backend torch")
        if spec.device != "cpu":
            raise ModelLoadError("the onnx backends run on the CPU; on a GPU use backend torch")
        if spec.dtype != "float32":
            raise ModelLoadError(f"dtype {spec.dtype} is for the torch backend; ONNX models run in float32 or int8")
        manifest = run_export(spec)
        self._served = served_variant(manifest, self.variant)
        self.figures = manifest["variants"][self._served]
        self._graphs = manifest["graphs"]
        super().load(spec)

    def _load_model(self, spec: LoadSpec):
        model = super()._load_model(spec)
        family = importlib.import_module(f"{__package__}.{FAMILIES[spec.head.onnx]}")
        entry = entry_dir(spec.cache_dir, export_revision(spec), spec.head)
        try:
            family.attach(model, open_sessions(Path(entry), self._graphs, self._served, spec.threads))
        except Exception as exc:  # noqa: BLE001 - a broken export is the export's fault, reported as a load error
            raise ModelLoadError(f"the ONNX export of {spec.model_id or spec.path.name} cannot run: "
                                 f"{type(exc).__name__}: {exc}") from None
        return model
