"""The PyTorch backend (transformers models on CPU or CUDA)."""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any, Optional, Sequence

import numpy as np
import torch
import transformers
from transformers import AutoTokenizer

from hubserve.errors import BackendFailure, InvalidInput, ModelLoadError

from .base import Generation, LoadSpec

logger = logging.getLogger(__name__)

_MODEL_CLASSES = {
    "base": "AutoModel",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "masked-lm": "AutoModelForMaskedLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "causal-lm": "AutoModelForCausalLM",
}
_UNUSED_KWARGS = "The following `model_kwargs` are not used by the model"
_threads_set: Optional[int] = None
_seed_lock = threading.Lock()


def configure_threads(threads: Optional[int]) -> None:
    """Sets torch's intra-op threads once per replica process."""
    global _threads_set
    if threads and _threads_set != threads:
        torch.set_num_threads(threads)
        _threads_set = threads


class TorchBackend:
    """Runs a transformers model with PyTorch."""

    def __init__(self) -> None:
        self.model = None
        self.tokenizer = None
        self.spec: Optional[LoadSpec] = None
        self._pipe = None
        self.compute_type = "cpu"
        self.mask_token: Optional[str] = None
        self.max_input_tokens = 512
        self.device = torch.device("cpu")

    def load(self, spec: LoadSpec) -> None:
        configure_threads(spec.threads)
        if spec.device == "cuda":
            if not torch.cuda.is_available():
                raise ModelLoadError("device `cuda` was configured for this model, but no GPU is visible to the replica")
            self.device = torch.device("cuda")
            self.compute_type = "gpu"
        try:
            cls = getattr(transformers, _MODEL_CLASSES[spec.model_kind])
            self.tokenizer = AutoTokenizer.from_pretrained(spec.path, trust_remote_code=False)
            self.model = cls.from_pretrained(spec.path, trust_remote_code=False).to(self.device).eval()
        except Exception as exc:  # noqa: BLE001 - every load failure becomes one clear error
            raise ModelLoadError(f"Failed to load {spec.path.name}: {type(exc).__name__}: {exc}") from None
        self.spec = spec
        self.mask_token = getattr(self.tokenizer, "mask_token", None)
        self.max_input_tokens = self._max_tokens()
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _max_tokens(self) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None) or 0
        if 0 < limit < 1_000_000:
            return int(limit)
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 512)

    @property
    def pipe(self):
        if self._pipe is None:
            self._pipe = transformers.pipeline(
                self.spec.pipeline, model=self.model, tokenizer=self.tokenizer, device=self.device
            )
        return self._pipe

    def _max_positions(self) -> Optional[int]:
        cfg = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_target_positions"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def _clamp_new_tokens(self, kwargs: dict, used: int) -> None:
        """Keeps generation inside the model's position table (longer runs crash)."""
        limit = self._max_positions()
        if limit is None or kwargs.get("max_new_tokens") is None:
            return
        room = limit - used
        if room <= 0:
            raise InvalidInput(f"Input validation error: the prompt has {used} tokens, the model's limit is {limit}")
        kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], room)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        seed = kwargs.pop("seed", None)
        if self.model.config.is_encoder_decoder:
            self._clamp_new_tokens(kwargs, 1)
        try:
            with torch.inference_mode(), _seed_lock:
                if seed is not None:
                    torch.manual_seed(seed)
                return self.pipe(*args, **kwargs)
        except ValueError as exc:
            if str(exc).startswith(_UNUSED_KWARGS):
                raise InvalidInput(str(exc)) from None
            raise

    def embed(self, texts: Sequence[str], *, truncate: bool, max_length: Optional[int] = None,
              truncation_side: str = "right") -> tuple[np.ndarray, np.ndarray]:
        limit = min(max_length or self.max_input_tokens, self.max_input_tokens)
        self.tokenizer.truncation_side = truncation_side
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        if not truncate:
            lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]
            if max(lengths) > limit:
                raise InvalidInput(
                    f"Input validation error: an input has {max(lengths)} tokens, more than the model's "
                    f"limit of {limit}; send `truncate: true` to cut it"
                )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            out = self.model(**enc)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return hidden.float().cpu().numpy(), enc["attention_mask"].cpu().numpy()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompt: str, params: dict, *, want_tokens: bool = False) -> list[Generation]:
        params = dict(params)
        seed = params.pop("seed", None)
        stop = params.pop("stop", None) or None
        truncate = params.pop("truncate", None)
        enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        if truncate:
            enc = {k: v[:, -truncate:] for k, v in enc.items()}
        prompt_len = int(enc["input_ids"].shape[1])
        self._clamp_new_tokens(params, prompt_len)
        kwargs = dict(params, return_dict_in_generate=True, output_logits=want_tokens)
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        try:
            with torch.inference_mode(), _seed_lock:
                if seed is not None:
                    torch.manual_seed(seed)
                out = self.model.generate(**enc, **kwargs)
        except ValueError as exc:
            if str(exc).startswith(_UNUSED_KWARGS):
                raise InvalidInput(str(exc)) from None
            raise BackendFailure(f"generation failed: {exc}") from exc
        return [
            self._describe(out, row, prompt_len, stop, seed, want_tokens)
            for row in range(out.sequences.shape[0])
        ]

    def _describe(self, out, row: int, prompt_len: int, stop, seed, want_tokens: bool) -> Generation:
        new_ids = out.sequences[row, prompt_len:].tolist()
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = self.tokenizer.pad_token_id
        # NOTE(hubserve): finished rows of a multi-sequence batch are padded; drop the padding.
        while new_ids and new_ids[-1] == pad and pad not in eos_ids:
            new_ids.pop()
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        if stop and any(s in text for s in stop):
            reason = "stop_sequence"
        elif new_ids and new_ids[-1] in eos_ids:
            reason = "eos_token"
        else:
            reason = "length"
        tokens = []
        if want_tokens:
            special = set(self.tokenizer.all_special_ids)
            for step, token_id in enumerate(new_ids):
                logprobs = torch.log_softmax(out.logits[step][row].float(), dim=-1)
                tokens.append({
                    "id": int(token_id),
                    "text": self.tokenizer.decode([token_id]),
                    "logprob": float(logprobs[token_id]),
                    "special": token_id in special,
                })
        return Generation(text=text, finish_reason=reason, tokens=tokens, prompt_tokens=prompt_len, seed=seed)

    def close(self) -> None:
        self._pipe = None
        self.model = None
        self.tokenizer = None
        gc.collect()

    def __del__(self) -> None:
        self.close()
