"""Backends behind one protocol; frameworks are imported only when a model loads."""

from __future__ import annotations

from hubserve.errors import ModelLoadError

from .base import Backend, Generation, LoadSpec

__all__ = ["Backend", "Generation", "LoadSpec", "create_backend", "import_framework"]


def import_framework(name: str) -> None:
    """Imports a backend's framework ahead of the first load (seconds of a cold start).

    Args:
        name: ``auto`` or ``torch``.
    """
    if name in ("auto", "torch"):
        from . import torch_backend  # noqa: F401

        import transformers.pipelines  # noqa: F401


def create_backend(name: str) -> Backend:
    """A new, unloaded backend for the configured backend name.

    Args:
        name: ``auto`` or ``torch``.

    Raises:
        ModelLoadError: for a backend this build cannot run.
    """
    if name in ("auto", "torch"):
        from .torch_backend import TorchBackend

        return TorchBackend()
    raise ModelLoadError(f"backend `{name}` is not available")
