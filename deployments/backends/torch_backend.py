"""The PyTorch backend (transformers models on CPU or CUDA)."""

from __future__ import annotations

import gc
import inspect
import logging
import queue
import threading
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import transformers
from transformers import LogitsProcessorList, StoppingCriteriaList

from hubserve.config.limits import LimitsConfig
from hubserve.errors import BackendFailure, InvalidInput, ModelLoadError

from .base import Generation, LoadSpec
from .chat_template import tokenizer_chat_prompt
from .generation_defaults import bound_generation_defaults
from .torch_support import (DONE, PIPELINE_CLASSES, UNUSED_KWARGS, Cancelled, LogprobRecorder, QueueStreamer,
                            apply_deadline, check_timm, load_preprocessor, seed_lock, unsupported)
from .torch_tasks import TaskCalls

logger = logging.getLogger(__name__)

_threads_set: Optional[int] = None


def configure_threads(threads: Optional[int]) -> None:
    """Sets torch's intra-op threads once per replica process."""
    global _threads_set
    if threads and _threads_set != threads:
        torch.set_num_threads(threads)
        _threads_set = threads


class TorchBackend(TaskCalls):
    """Runs a transformers model with PyTorch."""

    def __init__(self) -> None:
        self.model = None
        self.tokenizer = None
        self.preprocessors: dict[str, Any] = {}
        self.spec: Optional[LoadSpec] = None
        self._pipe = None
        self.compute_type = "cpu"
        self.mask_token: Optional[str] = None
        self.max_input_tokens = 512
        self.vocab_size = 0
        self.sampling_rate: Optional[int] = None
        self.can_generate = False
        self.device = torch.device("cpu")

    def load(self, spec: LoadSpec) -> None:
        configure_threads(spec.threads)
        if spec.device == "cuda":
            if not torch.cuda.is_available():
                raise ModelLoadError("device `cuda` was configured for this model, but no GPU is visible to the replica")
            self.device = torch.device("cuda")
            self.compute_type = "gpu"
        if spec.dtype == "float16" and spec.device != "cuda":
            raise ModelLoadError("dtype float16 runs on device cuda; on the CPU use float32 (or backend onnx-int8)")
        check_timm(spec.path)
        try:
            self.preprocessors = {key: load_preprocessor(key, spec.path) for key in spec.preprocessors}
            for key in spec.optional_preprocessors:
                try:
                    self.preprocessors[key] = load_preprocessor(key, spec.path)
                except (OSError, ValueError, KeyError):  # the folder has none
                    pass
            self.model = self._load_model(spec)
        except ModelLoadError:
            raise
        except MemoryError:
            raise ModelLoadError(f"Failed to load {spec.path.name}: out of memory") from None
        except Exception as exc:  # noqa: BLE001 - the folder is what transformers cannot load: the model's fault
            raise unsupported(spec.path, exc) from None
        self.spec = spec
        self.limits = spec.limits or LimitsConfig()
        bound_generation_defaults(self.model, self.limits, spec.model_id or spec.path.name)
        # NOTE(hubserve): a tokenizer may add inputs the model does not take (token_type_ids for BART).
        self._forward_args = frozenset(inspect.signature(self.model.forward).parameters)
        processor = self.preprocessors.get("processor")
        self.tokenizer = self.preprocessors.get("tokenizer") or getattr(processor, "tokenizer", None)
        extractor = self.preprocessors.get("feature_extractor") or getattr(processor, "feature_extractor", None)
        self.sampling_rate = getattr(extractor, "sampling_rate", None)
        self.can_generate = bool(getattr(self.model, "can_generate", lambda: False)())
        if self.tokenizer is None:
            return
        self.mask_token = getattr(self.tokenizer, "mask_token", None)
        self._special_ids = frozenset(self.tokenizer.all_special_ids)
        self.vocab_size = len(self.tokenizer)
        self.max_input_tokens = self._max_tokens()
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _load_model(self, spec: LoadSpec):
        cls = getattr(transformers, spec.head.auto_class)
        dtype = torch.float16 if spec.dtype == "float16" else torch.float32
        return cls.from_pretrained(spec.path, trust_remote_code=False, dtype=dtype).to(self.device).eval()

    def _build_pipeline(self):
        own = PIPELINE_CLASSES.get(self.spec.pipeline)
        return transformers.pipeline(self.spec.pipeline, model=self.model, device=self.device, **self.preprocessors,
                                     **({"pipeline_class": own} if own else {}))

    def _hidden_states(self, enc: dict) -> np.ndarray:
        """Token embeddings ``[batch, tokens, hidden]`` of a tokenized batch."""
        enc = {k: v.to(self.device) for k, v in enc.items() if k in self._forward_args}
        with torch.inference_mode():
            out = self.model(**enc)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return hidden.float().cpu().numpy()

    def _max_tokens(self) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None) or 0
        if 0 < limit < 1_000_000:
            return int(limit)
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 512)

    @property
    def pipe(self):
        if self._pipe is None:
            self._pipe = self._build_pipeline()
        return self._pipe

    def _max_positions(self) -> Optional[int]:
        """The length of the position table of what generates (the decoder of a vision
        encoder-decoder)."""
        cfg = self.model.config
        cfg = getattr(cfg, "decoder", None) or cfg
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
        with self._pipeline_run(kwargs, batch=False):
            return self.pipe(*args, **kwargs)

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
        return self._hidden_states(enc), enc["attention_mask"].numpy()

    def chat_prompt(self, messages: list[dict], deadline: Optional[float] = None) -> str:
        return tokenizer_chat_prompt(self.tokenizer, messages, self.limits, deadline)

    def _prepare_generation(self, prompt: str, params: dict):
        params = dict(params)
        seed = params.pop("seed", None)
        stop = params.pop("stop", None) or None
        truncate = params.pop("truncate", None)
        apply_deadline(params)
        enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        # NOTE(hubserve): some tokenizers add token_type_ids, which decoder-only exports do not take.
        enc = {k: v for k, v in enc.items() if k != "token_type_ids"}
        if truncate:
            enc = {k: v[:, -truncate:] for k, v in enc.items()}
        prompt_len = int(enc["input_ids"].shape[1])
        self._clamp_new_tokens(params, prompt_len)
        params.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        if stop:
            params.update(stop_strings=stop, tokenizer=self.tokenizer)
        return enc, params, prompt_len, stop, seed

    def _generate(self, enc, kwargs: dict, seed: Optional[int]):
        try:
            with torch.inference_mode(), seed_lock:
                if seed is not None:
                    torch.manual_seed(seed)
                return self.model.generate(**enc, **kwargs)
        except ValueError as exc:
            if str(exc).startswith(UNUSED_KWARGS):
                raise InvalidInput(str(exc)) from None
            raise BackendFailure(f"generation failed: {exc}") from exc

    def generate(self, prompt: str, params: dict, *, want_tokens: bool = False) -> list[Generation]:
        enc, kwargs, prompt_len, stop, seed = self._prepare_generation(prompt, params)
        out = self._generate(enc, dict(kwargs, return_dict_in_generate=True, output_logits=want_tokens), seed)
        results = []
        for row in range(out.sequences.shape[0]):
            new_ids = self._strip_padding(out.sequences[row, prompt_len:].tolist())
            tokens = []
            if want_tokens:
                logprobs = [torch.log_softmax(step[row].float(), dim=-1) for step in out.logits]
                tokens = [self._token(t, float(logprobs[i][t])) for i, t in enumerate(new_ids)]
            results.append(self._generation(new_ids, tokens, stop, seed, prompt_len))
        return results

    def stream(self, prompt: str, params: dict) -> Iterator[Union[dict, Generation]]:
        enc, kwargs, prompt_len, stop, seed = self._prepare_generation(prompt, params)
        events: queue.Queue = queue.Queue()
        recorder = LogprobRecorder()
        cancelled = threading.Event()
        kwargs.update(streamer=QueueStreamer(events), logits_processor=LogitsProcessorList([recorder]),
                      stopping_criteria=StoppingCriteriaList([Cancelled(cancelled)]))

        def work() -> None:
            try:
                self._generate(enc, kwargs, seed)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                events.put(exc)
            events.put(DONE)

        threading.Thread(target=work, name="hubserve-generate", daemon=True).start()
        ids: list[int] = []
        tokens: list[dict] = []
        text = ""
        try:
            while (item := events.get()) is not DONE:
                if isinstance(item, BaseException):
                    raise item
                ids.append(item)
                # NOTE(hubserve): decode the whole prefix so multi-byte characters split over tokens come out whole.
                full = self.tokenizer.decode(ids, skip_special_tokens=False)
                token = self._token(item, recorder.logprob(len(ids) - 1, item), text=full[len(text):])
                text = full
                tokens.append(token)
                yield token
            yield self._generation(self._strip_padding(ids), tokens, stop, seed, prompt_len)
        finally:
            cancelled.set()  # the consumer is gone (client disconnected): the generation stops too

    def _strip_padding(self, new_ids: list[int]) -> list[int]:
        pad = self.tokenizer.pad_token_id
        # NOTE(hubserve): finished rows of a multi-sequence batch are padded; drop the padding.
        while new_ids and new_ids[-1] == pad and pad not in self._eos_ids():
            new_ids = new_ids[:-1]
        return new_ids

    def _eos_ids(self) -> set:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) - {None}

    def _token(self, token_id: int, logprob: float, text: Optional[str] = None) -> dict:
        return {
            "id": int(token_id),
            "text": self.tokenizer.decode([token_id]) if text is None else text,
            "logprob": logprob,
            "special": token_id in self._special_ids,
        }

    def _generation(self, new_ids: list[int], tokens: list[dict], stop, seed, prompt_len: int) -> Generation:
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        if stop and any(s in text for s in stop):
            reason = "stop_sequence"
        elif new_ids and new_ids[-1] in self._eos_ids():
            reason = "eos_token"
        else:
            reason = "length"
        return Generation(text=text, finish_reason=reason, tokens=tokens, seed=seed,
                          generated_tokens=len(new_ids), prompt_tokens=prompt_len)

    def close(self) -> None:
        self._pipe = None
        self.model = None
        self.tokenizer = None
        self.preprocessors = {}
        gc.collect()

    def __del__(self) -> None:
        self.close()
