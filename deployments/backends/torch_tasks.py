"""The calls of the tasks whose transformers 4 pipelines transformers 5 removed (summarization,
translation, text2text-generation, image-to-text, visual and extractive question answering):
the torch backend's generation and forward passes, run as those pipelines ran them."""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import transformers

from hubserve.errors import InvalidInput

from .torch_support import UNUSED_KWARGS, apply_deadline, seed_lock


class TaskCalls:
    """Mixed into ``TorchBackend`` (``self.model``, ``self.tokenizer``, ``self.preprocessors``...)."""

    def generation_presets(self) -> dict:
        """The model config's legacy ``prefix`` and (a copy of) its ``task_specific_params``."""
        config = self.model.config
        return {"prefix": getattr(config, "prefix", None),
                "task_specific_params": copy.deepcopy(getattr(config, "task_specific_params", None) or {})}

    def pipeline_generation_config(self, defaults: dict, task_params: Optional[dict] = None):
        """The GenerationConfig a transformers 4.57 pipeline generated with: its ``defaults`` where the model's
        own generation config keeps the global default, a pipeline length default dropped for a model
        ``max_length``, then the ``task_params`` (``task_specific_params[task]`` less its prefix)."""
        config = transformers.GenerationConfig(**defaults)
        model_config = self.model.generation_config
        global_defaults = model_config._get_default_generation_params()
        for key, value in model_config.to_dict().items():
            if key.startswith("_") or key == "transformers_version" or not hasattr(config, key):
                continue
            default = global_defaults.get(key)
            if value is not None and value != default and getattr(config, key) in (None, default):
                setattr(config, key, value)
        if defaults.get("max_new_tokens") is not None and config.max_new_tokens == defaults["max_new_tokens"] \
                and config.max_length not in (None, 20):
            config.max_new_tokens = None
        config.update(**(task_params or {}))
        if self.tokenizer is not None and self.tokenizer.pad_token_id is not None and config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        return config

    @contextlib.contextmanager
    def _pipeline_run(self, params: dict, batch: bool = True):
        """Pops ``seed`` and ``deadline`` off ``params`` and runs the block seeded, as ``forward`` does."""
        seed = params.pop("seed", None)
        apply_deadline(params)
        if self.model.config.is_encoder_decoder:
            self._clamp_new_tokens(params, 1)
        try:
            with torch.inference_mode(), seed_lock:
                if seed is not None:
                    torch.manual_seed(seed)
                if batch:
                    # NOTE(hubserve): transformers 4 ran a list of inputs through a DataLoader, whose iterator
                    # draws one number from torch's generator; drawing it too keeps seeded samples the same.
                    torch.empty((), dtype=torch.int64).random_()
                yield
        except ValueError as exc:
            if str(exc).startswith(UNUSED_KWARGS):
                raise InvalidInput(str(exc)) from None
            raise

    def _decode_text(self, ids, clean_up: Optional[bool]) -> str:
        # NOTE(hubserve): transformers 5 skips clean_up_tokenization_spaces for BPE tokenizers; 4.57 applied it.
        text = self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        flag = getattr(self.tokenizer, "clean_up_tokenization_spaces", False) if clean_up is None else clean_up
        return self.tokenizer.clean_up_tokenization(text) if flag else text

    def generate_from_text(self, texts: Sequence[str], params: dict, *, defaults: dict,
                           task_params: Optional[dict] = None, prefix: str = "", truncation: Optional[str] = None,
                           translation: Optional[tuple] = None, clean_up: Optional[bool] = False,
                           check: Optional[Any] = None) -> list[list[str]]:
        """The texts a sequence-to-sequence model writes for each text, one at a time."""
        params = dict(params)
        config = self.pipeline_generation_config(defaults, task_params)
        truncation = truncation or "do_not_truncate"
        out = []
        with self._pipeline_run(params):
            for text in texts:
                if translation is not None and hasattr(self.tokenizer, "_build_translation_inputs"):
                    try:
                        enc = self.tokenizer._build_translation_inputs(
                            text, return_tensors="pt", truncation=truncation, src_lang=translation[0],
                            tgt_lang=translation[1])
                    except (ValueError, KeyError) as exc:
                        raise InvalidInput(str(exc).strip("'\"")) from None
                else:
                    enc = self.tokenizer(prefix + text, padding=False, truncation=truncation, return_tensors="pt")
                    enc.pop("token_type_ids", None)
                enc = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in enc.items()}
                if check is not None:
                    check(int(enc["input_ids"].shape[1]), params.get("min_length", config.min_length or 0),
                          params.get("max_length", config.max_length or 20))
                ids = self.model.generate(**enc, **params, generation_config=config)
                out.append([self._decode_text(row, clean_up) for row in ids])
        return out

    def _image_inputs(self, image: Any, question: Optional[str]) -> dict:
        inputs = {}
        if question is not None:
            inputs.update(self.tokenizer(question, return_tensors="pt", padding=False, truncation=False))
        pixels = self.preprocessors["image_processor"](images=image, return_tensors="pt")
        pixels = pixels.to(getattr(self.model, "dtype", torch.float32))
        inputs.update(pixels)
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}

    def generate_from_image(self, images: Sequence[Any], params: dict, *, defaults: dict,
                            question: Optional[str] = None) -> list[list[str]]:
        """The texts a model writes for each image (a caption, or the answer to ``question``)."""
        params = dict(params)
        config = self.pipeline_generation_config(defaults)
        out = []
        with self._pipeline_run(params, batch=question is None):
            for image in images:
                inputs = self._image_inputs(image, question)
                if question is None:
                    if self.model.config.model_type == "git":
                        inputs["input_ids"] = None
                    ids = self.model.generate(inputs.pop(self.model.main_input_name), **inputs, **params,
                                              generation_config=config)
                else:
                    ids = self.model.generate(**inputs, **params, generation_config=config)
                out.append([self._decode_text(row, None) for row in ids])
        return out

    def score_image_text(self, image: Any, text: str) -> list[tuple[str, float]]:
        """``(label, sigmoid score)`` of each of a classifier's labels for an image and a text, in label order."""
        with torch.inference_mode():
            logits = self.model(**self._image_inputs(image, text)).logits
        labels = self.model.config.id2label
        return [(labels[i], score) for i, score in enumerate(logits.sigmoid()[0].tolist())]

    def logits(self, encode: Callable[[Any], Any]) -> tuple[Any, list[dict[str, np.ndarray]]]:
        """``(encoded, outputs)``: ``encoded = encode(self.tokenizer)``, then the model run once per
        row of ``encoded.rows`` (``{input name: token ids}``); ``outputs[i]`` holds row i's tensor
        outputs (``start_logits``...) as numpy arrays without the batch axis."""
        encoded = encode(self.tokenizer)
        outputs = []
        with torch.inference_mode():
            for row in encoded.rows:
                inputs = {k: torch.tensor([list(v)], dtype=torch.long, device=self.device)
                          for k, v in row.items() if k in self._forward_args}
                if "use_cache" in self._forward_args:
                    inputs["use_cache"] = False
                out = self.model(**inputs)
                outputs.append({k: (v.float() if v.dtype == torch.bfloat16 else v)[0].cpu().numpy()
                                for k, v in out.items() if isinstance(v, torch.Tensor)})
        return encoded, outputs

