"""Backends behind one protocol; frameworks are imported only when a model loads."""

from __future__ import annotations

from hubserve.errors import ModelLoadError

from .base import Backend, Generation, LoadSpec

__all__ = ["Backend", "Generation", "LoadSpec", "create_backend", "import_framework", "resolve_backend"]


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


def resolve_backend(name: str, model_type: str, model_kind: str) -> str:
    """The concrete backend of a configured name: ``auto`` is ``onnx`` when optimum's
    exporter supports the architecture for this head, else ``torch``."""
    if name != "auto":
        return name
    from .onnx_backend import supports

    return "onnx" if supports(model_type, model_kind) else "torch"


def create_backend(name: str) -> Backend:
    """A new, unloaded backend.

    Args:
        name: ``torch``, ``onnx`` or ``onnx-int8`` (resolve ``auto`` first).

    Raises:
        ModelLoadError: for an unknown backend.
    """
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend()
    if name in ("onnx", "onnx-int8"):
        from .onnx_backend import OnnxBackend

        return OnnxBackend(quantize=name == "onnx-int8")
    raise ModelLoadError(f"backend `{name}` is not available")
