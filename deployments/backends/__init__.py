"""Backends behind one protocol; frameworks are imported only when a model loads."""

from __future__ import annotations

from typing import Optional

from hubserve.errors import ModelLoadError

from .base import Backend, Generation, LoadSpec

__all__ = ["Backend", "Generation", "LoadSpec", "create_backend", "import_framework", "needs_torch",
           "resolve_backend"]

#: The model kind that the torch-free ONNX backend runs on the CPU.
TORCH_FREE_KIND = "base"


def needs_torch(name: str, model_kind: str, device: str = "cpu") -> bool:
    """Whether a replica running ``model_kind`` models on backend ``name`` imports torch up front
    (``auto`` and the onnx backends run embedding models on the CPU without it)."""
    return name == "torch" or model_kind != TORCH_FREE_KIND or device != "cpu"


def import_framework(name: str) -> None:
    """Imports a backend's framework ahead of the first load (seconds of a cold start).

    Args:
        name: a configured backend name.
    """
    from . import torch_backend  # noqa: F401

    import transformers.pipelines  # noqa: F401

    if name != "torch":
        from . import onnx_backend  # noqa: F401

        import optimum.onnxruntime  # noqa: F401


def resolve_backend(name: str, model_type: str, model_kind: str, device: str = "cpu") -> str:
    """The concrete backend of a configured name: ``auto`` is ``onnx`` when optimum's
    exporter supports the architecture for this head, else ``torch``. For embedding
    models on the CPU ``auto`` is ``onnx`` without asking optimum (which imports torch):
    the export says whether it can (``ExportUnsupported``)."""
    if name != "auto":
        return name
    if not needs_torch(name, model_kind, device):
        return "onnx"
    from .onnx_export import supports

    return "onnx" if supports(model_type, model_kind) else "torch"


def create_backend(name: str, model_kind: Optional[str] = None, device: str = "cpu") -> Backend:
    """A new, unloaded backend.

    Args:
        name: ``torch``, ``onnx`` or ``onnx-int8`` (resolve ``auto`` first).
        model_kind: the head it will load; embedding models on the CPU get the
            torch-free ``OrtEmbedder`` for the onnx backends.
        device: ``cpu`` or ``cuda``.

    Raises:
        ModelLoadError: for an unknown backend.
    """
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend()
    if name in ("onnx", "onnx-int8"):
        if model_kind is not None and not needs_torch(name, model_kind, device):
            from .ort_embedder import OrtEmbedder

            return OrtEmbedder(quantize=name == "onnx-int8")
        from .onnx_backend import OnnxBackend

        return OnnxBackend(quantize=name == "onnx-int8")
    raise ModelLoadError(f"backend `{name}` is not available")
