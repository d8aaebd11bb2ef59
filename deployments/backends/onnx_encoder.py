"""The ``encoder`` ONNX family: heads that answer in one forward pass.

Encoders and their heads (feature extraction, sequence and token classification, question
answering, masked LM), image classification and segmentation, audio classification, CTC
speech recognition and CLIP zero-shot: whatever inputs of ``INPUTS`` the model's forward
takes are the graph's inputs, every tensor of its output is a graph output, and each axis
of each is dynamic except image channels. ``attach`` puts the graph in place of the model's
forward, returning the same ``ModelOutput`` class, so transformers' pipelines run on ONNX
Runtime unchanged.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path

import numpy as np

from .onnx_graphs import trace

GRAPHS = ("model.onnx",)
#: The inputs a graph may take, in this order; anything else the forward takes stays at its default.
INPUTS = ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "input_values", "input_features")
#: Inputs of integer ids (int64 in the graph); the rest are float32.
ID_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})
_OUTPUT_CLASS = "hubserve.output_class"
_SAMPLE_TOKENS = 12


def _text_config(config):
    return getattr(config, "text_config", None) or config


def _vision_config(config):
    return getattr(config, "vision_config", None) or config


def _image_shape(model) -> tuple[int, int, int]:
    """Channels, height and width of the pixels the model's image processor makes."""
    try:
        from PIL import Image
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(model.config._name_or_path, trust_remote_code=False)
        pixels = processor(Image.new("RGB", (40, 30), (120, 60, 30)), return_tensors="pt")["pixel_values"]
        return tuple(pixels.shape[1:])
    except Exception:  # noqa: BLE001 - no processor in the folder: the config's size
        cfg = _vision_config(model.config)
        size = getattr(cfg, "image_size", 224)
        size = size if isinstance(size, (list, tuple)) else (size, size)
        return (int(getattr(cfg, "num_channels", 3)), int(size[0]), int(size[1]))


#: What the gate reads when the model has a tokenizer (real text is what it will serve).
SAMPLE_TEXTS = ("The quick brown fox jumps over the lazy dog near the river bank.",
                "Paris is the capital of France.", "How many people live in Berlin?")


def _tokenized(model, batch: int):
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model.config._name_or_path, trust_remote_code=False)
        if tokenizer.pad_token is None:
            return None
        encoded = tokenizer(list(SAMPLE_TEXTS[:batch]), padding=True, truncation=True, max_length=32,
                            return_tensors="pt")
    except Exception:  # noqa: BLE001 - no usable tokenizer in the folder: random ids
        return None
    return {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _text_inputs(model, batch: int, generator) -> dict:
    import torch

    encoded = _tokenized(model, batch)
    if encoded is not None and encoded["input_ids"].shape[1] > 2:
        encoded.setdefault("token_type_ids", torch.zeros_like(encoded["input_ids"]))
        return encoded
    cfg = _text_config(model.config)
    vocab = int(getattr(cfg, "vocab_size", 0) or 100)
    ids = torch.randint(min(5, vocab - 1), vocab, (batch, _SAMPLE_TOKENS), generator=generator)
    mask = torch.ones(batch, _SAMPLE_TOKENS, dtype=torch.long)
    pad = getattr(cfg, "pad_token_id", None)
    if batch > 1:  # the last row is padded, so the graph keeps the mask's arithmetic
        mask[-1, -4:] = 0
        ids[-1, -4:] = pad if isinstance(pad, int) and 0 <= pad < vocab else 0
    out = {"input_ids": ids, "attention_mask": mask}
    if int(getattr(cfg, "type_vocab_size", 0) or 0) > 1:
        types = torch.zeros_like(ids)
        types[:, _SAMPLE_TOKENS // 2:] = 1
        out["token_type_ids"] = types
    else:
        out["token_type_ids"] = torch.zeros_like(ids)
    return out


def gate_inputs(model) -> list[dict]:
    """Two seeded samples of the model's inputs: a batch of two (the second padded), and one row."""
    import torch

    takes = _takes(model)
    generator = torch.Generator().manual_seed(0)
    samples = []
    for batch in (2, 1):
        sample = {}
        if "input_ids" in takes:
            text_batch = batch + 1 if "pixel_values" in takes else batch  # CLIP: labels x images
            sample.update(_text_inputs(model, text_batch, generator))
        if "pixel_values" in takes:
            sample["pixel_values"] = torch.randn(batch, *_image_shape(model), generator=generator)
        if "input_values" in takes:
            sample["input_values"] = torch.randn(batch, 4000, generator=generator) * 0.1
            sample["attention_mask"] = torch.ones(batch, 4000, dtype=torch.long)
        if "input_features" in takes:
            sample.update(_spectrogram(model, batch, generator))
        samples.append({k: v for k, v in sample.items() if k in takes})
    return samples


def _spectrogram(model, batch: int, generator) -> dict:
    """Features of half a second of noise per row, by the model's own feature extractor (which
    knows their layout: ``[batch, frames, mel]`` or ``[batch, mel, frames]``)."""
    import torch
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(model.config._name_or_path, trust_remote_code=False)
    rate = int(getattr(extractor, "sampling_rate", 16000))
    audio = [(torch.randn(rate // 2, generator=generator) * 0.1).numpy() for _ in range(batch)]
    out = extractor(audio, sampling_rate=rate, return_tensors="pt")
    return {k: v for k, v in out.items() if k in ("input_features", "attention_mask")}


def _takes(model) -> list[str]:
    params = inspect.signature(model.forward).parameters
    return [name for name in INPUTS if name in params]


def _dynamic_axes(sample: dict, outputs: dict, feature_size: int = 0) -> dict:
    axes = {}
    for name, value in sample.items():
        fixed = {1} if name == "pixel_values" else set()  # channels
        if name == "input_features":  # the mel bins
            fixed = {i for i in (1, 2) if value.shape[i] == feature_size} or {1}
        axes[name] = {i: f"{name}_{i}" for i in range(value.dim()) if i not in fixed}
    for name, value in outputs.items():
        axes[name] = {i: f"{name}_{i}" for i in range(value.dim())}
    return axes


def _feature_size(model) -> int:
    """The mel bins of the model's spectrogram inputs (0: it takes none)."""
    if "input_features" not in _takes(model):
        return 0
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(model.config._name_or_path, trust_remote_code=False)
    if isinstance(getattr(extractor, "feature_size", None), int):
        return extractor.feature_size
    for name in ("num_mel_bins", "feature_size", "num_mel_filters"):
        value = getattr(model.config, name, None) or getattr(getattr(model.config, "encoder_config", None), name, None)
        if isinstance(value, int):
            return value
    return 0


def _tensor_outputs(output) -> dict:
    import torch

    return {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}


def export(model, folder: Path) -> None:
    """Writes ``model.onnx`` of a loaded transformers model (eval, float32)."""
    import onnx
    import torch

    takes = _takes(model)
    if not takes:
        raise ValueError(f"{type(model).__name__} takes none of the inputs {', '.join(INPUTS)}")
    sample = gate_inputs(model)[0]
    names = list(sample)
    with torch.inference_mode():
        reference = model(**sample, return_dict=True)
    outputs = _tensor_outputs(reference)
    if not outputs:
        raise ValueError(f"{type(model).__name__} returns no tensors")
    output_names = list(outputs)

    class _Positional(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = self.inner(**dict(zip(names, args)), return_dict=True)
            return tuple(out[name] for name in output_names)

    path = folder / GRAPHS[0]
    axes = _dynamic_axes(sample, outputs, _feature_size(model))
    trace(_Positional(model).eval(), path, {n: (sample[n], axes[n]) for n in names}, {n: axes[n] for n in output_names})
    graph = onnx.load(str(path), load_external_data=False)
    cls = type(reference)
    onnx.helper.set_model_props(graph, {_OUTPUT_CLASS: f"{cls.__module__}:{cls.__qualname__}"})
    onnx.save(graph, str(path))


def _output_class(session):
    """The transformers ``ModelOutput`` class the graph's outputs fill (only transformers' own)."""
    from transformers.utils import ModelOutput

    spec = session.get_modelmeta().custom_metadata_map.get(_OUTPUT_CLASS, "")
    module, _, name = spec.partition(":")
    if module.split(".")[0] == "transformers" and name.isidentifier():
        cls = getattr(importlib.import_module(module), name, None)
        if isinstance(cls, type) and issubclass(cls, ModelOutput):
            return cls
    raise ValueError(f"the export names no transformers output class ({spec!r})")


def attach(model, sessions: dict) -> None:
    """Runs ``model``'s forward on the ``model.onnx`` session and frees its torch weights."""
    import torch

    session = sessions[GRAPHS[0]]
    inputs = [node.name for node in session.get_inputs()]
    outputs = [node.name for node in session.get_outputs()]
    cls = _output_class(session)
    original = model.forward
    signature = inspect.signature(original)

    @functools.wraps(original)
    def forward(*args, **kwargs):
        given = signature.bind_partial(*args, **kwargs).arguments
        given.update(given.pop("kwargs", None) or {})
        feeds = {}
        for name in inputs:
            value = given.get(name)
            if value is None:
                value = _default(name, feeds, given)
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            feeds[name] = array.astype(np.int64 if name in ID_INPUTS else np.float32, copy=False)
        unused = [k for k, v in given.items() if k not in inputs and isinstance(v, torch.Tensor)]
        if unused:
            raise ValueError(f"the ONNX export of this model takes no {', '.join(unused)}")
        values = session.run(outputs, feeds)
        return cls(**{name: torch.from_numpy(value) for name, value in zip(outputs, values)})

    model.forward = forward
    strip_weights(model)


def _default(name: str, feeds: dict, given: dict):
    """An input the caller left out, as the model's forward would take its absence."""
    import torch

    source = given.get("input_ids")
    for other in ("input_values", "input_features"):
        source = given.get(other) if source is None else source
    if source is None:
        raise ValueError(f"the ONNX export of this model needs `{name}`")
    if name == "attention_mask":
        return torch.ones(source.shape[:2], dtype=torch.long)
    if name == "token_type_ids":
        return torch.zeros(source.shape[:2], dtype=torch.long)
    raise ValueError(f"the ONNX export of this model needs `{name}`")


def strip_weights(model, keep=()) -> None:
    """Frees the torch weights of ``model`` (but those of the modules in ``keep``), leaving
    empty tensors of their dtype, so ``model.device`` and ``model.dtype`` still answer."""
    import torch

    kept = {id(p) for module in keep for p in module.parameters()}
    for param in model.parameters():
        if id(param) not in kept:
            param.data = torch.empty(0, dtype=param.dtype, device=param.device)
