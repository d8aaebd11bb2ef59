"""Backends behind one protocol; frameworks are imported only when a model loads."""

from __future__ import annotations

from typing import Optional

from hubserve.errors import ModelLoadError

from .base import Backend, Generation, Head, LoadSpec

__all__ = ["Backend", "Generation", "Head", "LoadSpec", "create_backend", "import_framework", "needs_torch",
           "resolve_backend", "runs_without_torch"]

#: The head that the torch-free ONNX backend runs on the CPU (the embedding tasks').
TORCH_FREE_HEAD = "base"


def runs_without_torch(head: Head) -> bool:
    """Whether models of ``head`` can run on the CPU without torch (see ``needs_torch``)."""
    return head.name == TORCH_FREE_HEAD


def needs_torch(name: str, head: Head, device: str = "cpu") -> bool:
    """Whether a replica running ``head`` models on backend ``name`` imports torch up front
    (``auto`` and the onnx backends run embedding models on the CPU without it)."""
    return name == "torch" or not runs_without_torch(head) or device != "cpu"


def import_framework(name: str) -> None:
    """Imports a backend's framework ahead of the first load (seconds of a cold start).

    Args:
        name: a configured backend name.
    """
    from . import torch_backend  # noqa: F401

    import transformers.pipelines  # noqa: F401

    if name != "torch":
        from . import onnx_backend  # noqa: F401


def resolve_backend(name: str, head: Head, device: str = "cpu") -> str:
    """The backend that loads a model: ``auto`` is ``onnx`` (the export decides, and the model
    serves on torch where it is refused) for heads with an ONNX family on the CPU, else
    ``torch``."""
    if name != "auto":
        return name
    return "auto" if head.onnx is not None and device == "cpu" else "torch"


def create_backend(name: str, head: Optional[Head] = None, device: str = "cpu") -> Backend:
    """A new, unloaded backend.

    Args:
        name: ``torch``, ``auto``, ``onnx`` or ``onnx-int8`` (the onnx ones pick their export's
            variant: ``auto`` the fastest that passed the fidelity gate).
        head: the head it will load; embedding models on the CPU get the
            torch-free ``OrtEmbedder`` for the onnx backends, diffusion pipelines the
            ``DiffusersBackend`` (torch only).
        device: ``cpu`` or ``cuda``.

    Raises:
        ModelLoadError: for an unknown backend.
    """
    if head is not None and head.library == "diffusers":
        if name != "torch":
            raise ModelLoadError(f"diffusion pipelines run on backend torch, not `{name}`")
        from .diffusers_backend import DiffusersBackend

        return DiffusersBackend()
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend()
    if name in ("auto", "onnx", "onnx-int8"):
        if head is not None and not needs_torch(name, head, device):
            from .ort_embedder import OrtEmbedder

            return OrtEmbedder(name)
        from .onnx_backend import OnnxBackend

        return OnnxBackend(name)
    raise ModelLoadError(f"backend `{name}` is not available")
