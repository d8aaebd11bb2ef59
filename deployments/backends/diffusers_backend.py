"""Diffusion pipelines (text-to-image) on PyTorch, CPU or GPU, through diffusers.

A model folder in diffusers' layout (``model_index.json`` and one folder per component) loads
with safetensors only and without remote code; ``hubserve.repos.model_files`` has already refused
an index that names modules outside diffusers and transformers, or components outside the folder.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Optional

import torch

from hubserve.errors import ModelLoadError, ServiceUnavailable

from .base import LoadSpec
from .torch_backend import configure_threads
from .torch_support import seed_lock


class DiffusersBackend:
    """One diffusers pipeline. ``forward(prompt, seed=..., deadline=..., **options)`` gives a PIL image."""

    def __init__(self) -> None:
        self.pipe = None
        self.compute_type = "cpu"
        self.mask_token: Optional[str] = None
        self.max_input_tokens = 77
        self.vocab_size = 0
        self.sampling_rate: Optional[int] = None
        self.can_generate = False
        self.device = "cpu"

    def load(self, spec: LoadSpec) -> None:
        configure_threads(spec.threads)
        if spec.device == "cuda":
            if not torch.cuda.is_available():
                raise ModelLoadError("device `cuda` was configured for this model, but no GPU is visible to the replica")
            self.device, self.compute_type = "cuda", "gpu"
        if spec.dtype == "float16" and spec.device != "cuda":
            raise ModelLoadError("dtype float16 runs on device cuda; on the CPU use float32")
        import diffusers

        dtype = torch.float16 if spec.dtype == "float16" else torch.float32
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(
                spec.path, torch_dtype=dtype, use_safetensors=True, local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - every load failure becomes one clear error
            raise ModelLoadError(f"Failed to load {spec.path.name}: {type(exc).__name__}: {exc}") from None
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        tokenizer = getattr(pipe, "tokenizer", None)
        self.max_input_tokens = int(getattr(tokenizer, "model_max_length", 77) or 77)

    def default_size(self) -> int:
        """The side, in pixels, the model was trained at (its UNet's sample size x the VAE's scale)."""
        unet = getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)
        sample = getattr(getattr(unet, "config", None), "sample_size", 64)
        sample = sample[0] if isinstance(sample, (list, tuple)) else sample
        return int(sample) * int(getattr(self.pipe, "vae_scale_factor", 8))

    def forward(self, prompt: str, *, seed: int = 0, deadline: Optional[float] = None, **options: Any) -> Any:
        def check_deadline(pipe, step, timestep, callback_kwargs):
            if deadline is not None and time.time() > deadline:
                raise ServiceUnavailable("The request timed out while its image was drawn", headers={"Retry-After": "1"})
            return callback_kwargs

        with torch.inference_mode(), seed_lock:
            generator = torch.Generator(device=self.device).manual_seed(seed)
            out = self.pipe(prompt, generator=generator, callback_on_step_end=check_deadline, **options)
        return out.images[0]

    def close(self) -> None:
        self.pipe = None
        gc.collect()

    def __del__(self) -> None:
        self.close()
