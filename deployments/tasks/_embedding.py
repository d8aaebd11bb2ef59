"""Sentence embeddings as the model's own sentence-transformers config says.

Reads ``modules.json``, the Pooling module's ``config.json``,
``sentence_bert_config.json`` and ``config_sentence_transformers.json`` once when
a model loads, and pools token embeddings with numpy. Plain transformers models
(no ``modules.json``) pool by mean, as sentence-transformers does for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hubserve.errors import InvalidInput, ModelLoadError
from hubserve.repos.model_files import read_json_object

_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens", "lasttoken")
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class Pooling:
    """How one model turns token embeddings into a sentence embedding."""

    sentence_transformers: bool = False
    modes: tuple[str, ...] = ("mean_tokens",)
    normalize: bool = False
    max_seq_length: Optional[int] = None
    lowercase: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: Optional[str] = None


def load_pooling(folder: Path) -> Pooling:
    """The pooling of the model in ``folder``.

    Raises:
        ModelLoadError: for sentence-transformers modules this server cannot run
            (e.g. a Dense projection).
    """
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return Pooling()
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelLoadError(f"modules.json is not valid JSON: {exc}") from None
    modes: tuple[str, ...] = ("mean_tokens",)
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _SUPPORTED_MODULES:
            raise ModelLoadError(f"sentence-transformers module {module.get('type')} is not supported")
        if kind == "Pooling":
            cfg = read_json_object(folder / module.get("path", "") / "config.json")
            modes = tuple(m for m in _MODES if cfg.get(f"pooling_mode_{m}")) or modes
        elif kind == "Normalize":
            normalize = True
    bert_cfg = read_json_object(folder / "sentence_bert_config.json")
    st_cfg = read_json_object(folder / "config_sentence_transformers.json")
    return Pooling(
        sentence_transformers=True,
        modes=modes,
        normalize=normalize,
        max_seq_length=bert_cfg.get("max_seq_length"),
        lowercase=bool(bert_cfg.get("do_lower_case")),
        prompts=dict(st_cfg.get("prompts") or {}),
        default_prompt_name=st_cfg.get("default_prompt_name"),
    )


def apply_prompt(pooling: Pooling, texts: Sequence[str], prompt_name: Optional[str]) -> list[str]:
    """Prefixes the named (or default) prompt and applies the model's lowercasing."""
    name = prompt_name or pooling.default_prompt_name
    prefix = ""
    if name:
        if name not in pooling.prompts:
            known = ", ".join(sorted(pooling.prompts)) or "none"
            raise InvalidInput(f"prompt_name `{name}` is not a prompt of this model (its prompts: {known})")
        prefix = pooling.prompts[name]
    out = [prefix + t for t in texts]
    return [t.lower() for t in out] if pooling.lowercase else out


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Sentence embeddings ``[batch, hidden * len(modes)]`` from token embeddings."""
    m = mask[..., None].astype(hidden.dtype)
    lengths = np.clip(m.sum(axis=1), 1e-9, None)
    parts = []
    for mode in modes:
        if mode == "cls_token":
            parts.append(hidden[:, 0])
        elif mode == "max_tokens":
            parts.append(np.where(m > 0, hidden, -1e9).max(axis=1))
        elif mode == "mean_tokens":
            parts.append((hidden * m).sum(axis=1) / lengths)
        elif mode == "mean_sqrt_len_tokens":
            parts.append((hidden * m).sum(axis=1) / np.sqrt(lengths))
        elif mode == "lasttoken":
            last = np.maximum(mask.sum(axis=1) - 1, 0)
            parts.append(hidden[np.arange(hidden.shape[0]), last])
    return np.concatenate(parts, axis=-1).astype(np.float32)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis."""
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def sentence_embeddings(model, texts: Sequence[str], *, truncate: bool = True, direction: str = "right",
                        prompt_name: Optional[str] = None, normalize: Optional[bool] = None) -> np.ndarray:
    """Pooled (and, as configured or asked, normalized) embeddings of ``texts``."""
    pooling: Pooling = model.state
    texts = apply_prompt(pooling, texts, prompt_name)
    hidden, mask = model.backend.embed(texts, truncate=truncate, max_length=pooling.max_seq_length,
                                       truncation_side=direction)
    out = pool(hidden, mask, pooling.modes)
    if pooling.normalize if normalize is None else normalize:
        out = l2_normalize(out)
    return out
