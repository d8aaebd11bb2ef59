"""Token embeddings on ONNX Runtime without PyTorch (``x-compute-type: cpu+optimized``).

The embedding tasks need only a tokenizer and one forward pass, so a replica that
serves them imports ``onnxruntime`` and ``tokenizers`` (about 50 MB and a quarter of a
second) instead of torch and transformers (about 400 MB and 5 s). The model's
``tokenizer.json`` is read with ``tokenizers``, which is what transformers' fast
tokenizers run, with the padding and truncation transformers would apply. The ONNX
export itself needs torch once per model revision: it runs in a child process
(``onnx_export.run_export``) and is kept on disk.
"""

from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np
import onnxruntime as ort

from hubserve.errors import ExportUnsupported, InvalidInput, ModelLoadError
from hubserve.repos.model_files import read_json_object

from . import runs_without_torch
from .base import LoadSpec
from .onnx_export import entry_dir, export_revision, graph_file, run_export, served_variant, session_options

__all__ = ["OrtEmbedder"]


def _token(value) -> Optional[str]:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class OrtEmbedder:
    """Runs the base model of an embedding task with ONNX Runtime and ``tokenizers``.

    Args:
        variant: the configured backend: ``auto``, ``onnx`` or ``onnx-int8`` (``OnnxBackend``).
    """

    def __init__(self, variant: str = "auto") -> None:
        self.variant = variant
        self.figures: dict = {}
        self.compute_type = "cpu+optimized"
        self.mask_token: Optional[str] = None
        self.max_input_tokens = 512
        self.vocab_size = 0
        self.sampling_rate: Optional[int] = None
        self.can_generate = False
        self.session: Optional[ort.InferenceSession] = None
        self.tokenizer = None
        self._lock = threading.Lock()

    def load(self, spec: LoadSpec) -> None:
        if not runs_without_torch(spec.head):
            raise ModelLoadError(f"the torch-free ONNX backend runs embedding models, not {spec.head.name}")
        if spec.device != "cpu" or spec.dtype != "float32":
            raise ExportUnsupported("the torch-free ONNX backend runs float32 models on the CPU")
        if not (spec.path / "tokenizer.json").is_file():
            raise ExportUnsupported("the model has no tokenizer.json (a fast tokenizer)")
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(spec.path / "tokenizer.json"))
        except Exception as exc:  # noqa: BLE001 - a malformed tokenizer is the model's fault
            raise ModelLoadError(f"tokenizer.json cannot be read: {exc}") from None
        manifest = run_export(spec)
        served = served_variant(manifest, self.variant)
        self.figures = manifest["variants"][served]
        model_file = entry_dir(spec.cache_dir, export_revision(spec), spec.head) / graph_file("model.onnx", served)
        try:
            self.session = ort.InferenceSession(str(model_file), session_options(spec.threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"ONNX Runtime cannot load {model_file.name}: {exc}") from None
        self._inputs = [node.name for node in self.session.get_inputs()]
        outputs = [node.name for node in self.session.get_outputs()]
        self._output = "last_hidden_state" if "last_hidden_state" in outputs else outputs[0]

        tok_cfg = read_json_object(spec.path / "tokenizer_config.json")
        special = read_json_object(spec.path / "special_tokens_map.json")
        model_cfg = read_json_object(spec.path / "config.json")
        limit = tok_cfg.get("model_max_length")
        if isinstance(limit, (int, float)) and 0 < limit < 1_000_000:
            self.max_input_tokens = int(limit)
        else:
            self.max_input_tokens = int(model_cfg.get("max_position_embeddings") or 512)
        pad = _token(tok_cfg.get("pad_token")) or _token(special.get("pad_token"))
        pad = pad or _token(tok_cfg.get("eos_token")) or _token(special.get("eos_token"))
        pad_id = tokenizer.token_to_id(pad) if pad else None
        tokenizer.no_truncation()
        tokenizer.enable_padding(pad_id=pad_id or 0, pad_token=pad or "[PAD]",
                                 direction=tok_cfg.get("padding_side", "right"))
        self.mask_token = _token(tok_cfg.get("mask_token")) or _token(special.get("mask_token"))
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.tokenizer = tokenizer

    def embed(self, texts: Sequence[str], *, truncate: bool, max_length: Optional[int] = None,
              truncation_side: str = "right") -> tuple[np.ndarray, np.ndarray]:
        limit = min(max_length or self.max_input_tokens, self.max_input_tokens)
        with self._lock:  # the truncation settings are the tokenizer's state
            if not truncate:
                self.tokenizer.no_truncation()
                longest = max(len(e.ids) for e in self.tokenizer.encode_batch(list(texts)))
                if longest > limit:
                    raise InvalidInput(
                        f"Input validation error: an input has {longest} tokens, more than the model's "
                        f"limit of {limit}; send `truncate: true` to cut it"
                    )
            self.tokenizer.enable_truncation(max_length=limit, direction=truncation_side)
            encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        columns = {"input_ids": ids, "attention_mask": mask}
        feeds = {}
        for name in self._inputs:
            if name in columns:
                feeds[name] = columns[name]
            elif name == "token_type_ids":
                feeds[name] = np.array([e.type_ids for e in encodings], dtype=np.int64)
            else:
                raise ModelLoadError(f"the ONNX model takes an input `{name}` this backend does not provide")
        hidden = self.session.run([self._output], feeds)[0]
        return hidden.astype(np.float32, copy=False), mask

    def forward(self, *args, **kwargs):
        raise ModelLoadError("the torch-free ONNX backend computes embeddings only")

    def chat_prompt(self, messages, deadline=None):
        raise ModelLoadError("the torch-free ONNX backend computes embeddings only")

    def generate(self, prompt, params, *, want_tokens=False):
        raise ModelLoadError("the torch-free ONNX backend computes embeddings only")

    def stream(self, prompt, params):
        raise ModelLoadError("the torch-free ONNX backend computes embeddings only")

    def close(self) -> None:
        self.session = None
        self.tokenizer = None
