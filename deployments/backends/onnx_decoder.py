"""The ``causal-lm`` ONNX family: decoder-only language models with a plain key/value cache.

Hybrid attach: the replica loads the model with transformers as usual, ``export``
writes one graph, ``decoder.onnx``, and ``attach`` swaps the model's ``forward``
for one that runs that graph, so ``model.generate`` (greedy, beams, sampling,
streamers, logits processors, stopping criteria...) stays transformers' own.

The graph takes ``input_ids``, ``attention_mask`` (past + new tokens),
``position_ids``, ``logits_index`` (the positions to project onto the vocabulary,
so a prompt only pays the lm head for its last token) and ``past.{i}.key`` /
``past.{i}.value``; it returns ``logits`` and ``present.{i}.key`` /
``present.{i}.value`` (the past with the new tokens appended). Between steps the
present tensors live in the ``DynamicCache`` that ``generate`` made, as torch
views of the ONNX Runtime outputs, so beam reordering and cropping keep working.

Refused (``ValueError``): encoder-decoder models, caches whose layers are not
plain growing key/value layers (sliding-window, hybrid, linear attention...), and
models whose forward has no ``past_key_values``.
"""

from __future__ import annotations

import inspect
import pathlib

import numpy as np

from .onnx_graphs import as_numpy, safe_ids, trace

GRAPHS: tuple[str, ...] = ("decoder.onnx",)


def _layer_count(model) -> int:
    """The number of cache layers, refusing any cache that is not plain keys/values."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{type(model).__name__} is an encoder-decoder model, not a decoder-only causal LM")
    if "past_key_values" not in inspect.signature(model.forward).parameters:
        raise ValueError(f"{type(model).__name__}.forward takes no past_key_values: no key/value cache to export")
    try:
        cache = DynamicCache(config=config)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusual cache
        raise ValueError(f"cannot build a DynamicCache for {type(model).__name__}: {exc}") from exc
    kinds = {type(layer).__name__ for layer in cache.layers}
    if not cache.layers or kinds != {DynamicLayer.__name__}:
        raise ValueError(
            f"{type(model).__name__} needs cache layers {sorted(kinds) or 'unknown'}; only plain key/value "
            "layers (DynamicLayer) are supported, not sliding-window, hybrid or recurrent caches"
        )
    return len(cache.layers)


def _sample_past(model, n_layers: int, batch: int, length: int):
    """Past keys/values of the model's own shapes (found by one small forward pass)."""
    import torch

    ids = torch.full((1, 1), safe_ids(model.config)[0], dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    layers = getattr(out.past_key_values, "layers", None)
    if layers is None or len(layers) != n_layers:
        raise ValueError(f"{type(model).__name__} does not return a layered DynamicCache")
    past = []
    for layer in layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not (torch.is_tensor(keys) and torch.is_tensor(values) and keys.dim() == 4 and values.dim() == 4):
            raise ValueError(f"{type(model).__name__} cache layers do not hold 4-d keys/values tensors")
        gen = torch.Generator().manual_seed(1)
        past.append(torch.randn(batch, keys.shape[1], length, keys.shape[3], generator=gen))
        past.append(torch.randn(batch, values.shape[1], length, values.shape[3], generator=gen))
    return past


class _Wrapper:
    """Builds the torch module traced into ``decoder.onnx`` (made lazily: torch imports stay inside functions)."""

    @staticmethod
    def make(model, n_layers: int, keep_index: bool):
        import torch
        from transformers import DynamicCache

        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, position_ids, logits_index, *past):
                cache = DynamicCache(config=self.model.config)
                for i in range(n_layers):
                    cache.update(past[2 * i], past[2 * i + 1], i)
                extra = {"logits_to_keep": logits_index} if keep_index else {}
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 past_key_values=cache, use_cache=True, **extra)
                logits = out.logits
                if not keep_index:
                    logits = logits.index_select(1, logits_index)
                flat = []
                for layer in out.past_key_values.layers:
                    flat += [layer.keys, layer.values]
                return (logits, *flat)

        return Wrapper().eval()


def export(model, folder: pathlib.Path) -> None:
    """Writes ``decoder.onnx`` (float32) for a decoder-only causal LM; ValueError when the architecture is refused."""
    import torch

    folder = pathlib.Path(folder)
    n_layers = _layer_count(model)
    keep_index = "logits_to_keep" in inspect.signature(model.forward).parameters
    config = model.config
    previous = getattr(config, "_attn_implementation", None)
    config._attn_implementation = "eager"  # traceable attention with explicit masks
    try:
        past = _sample_past(model, n_layers, batch=2, length=4)
        ids = torch.tensor([safe_ids(config)[:3]] * 2, dtype=torch.long)
        mask = torch.ones(2, 7, dtype=torch.long)
        mask[0, :2] = 0
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -3:]
        index = torch.tensor([2], dtype=torch.long)
        names = [f"past.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]
        inputs = {"input_ids": (ids, {0: "batch", 1: "sequence"}), "attention_mask": (mask, {0: "batch", 1: "total"}),
                  "position_ids": (positions, {0: "batch", 1: "sequence"}), "logits_index": (index, {0: "kept"}),
                  **{n: (t, {0: "batch", 2: "past"}) for n, t in zip(names, past)}}
        outputs = {"logits": {0: "batch", 1: "kept"}, **{n.replace("past.", "present."): {0: "batch", 2: "total"}
                                                          for n in names}}
        folder.mkdir(parents=True, exist_ok=True)
        trace(_Wrapper.make(model, n_layers, keep_index), folder / GRAPHS[0], inputs, outputs)
    finally:
        config._attn_implementation = previous


def attach(model, sessions: dict) -> None:
    """Runs ``model``'s forward on the ``decoder.onnx`` session and frees the torch weights it replaces."""
    import torch
    from transformers import DynamicCache
    from transformers.modeling_outputs import CausalLMOutputWithPast

    session = sessions[GRAPHS[0]]
    n_layers = _layer_count(model)
    input_names = {i.name for i in session.get_inputs()}
    past_meta = {i.name: i.shape for i in session.get_inputs() if i.name.startswith("past.")}
    if len(past_meta) != 2 * n_layers or "logits_index" not in input_names:
        raise ValueError(f"the decoder graph does not match {type(model).__name__} ({len(past_meta)} past inputs)")
    shapes = {}  # (heads, head_dim) per past input, learnt from the graph (or from the first present)
    for name, shape in past_meta.items():
        if isinstance(shape[1], int) and isinstance(shape[3], int):
            shapes[name] = (shape[1], shape[3])
    out_names = [o.name for o in session.get_outputs()]
    config = model.config

    def forward(input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, logits_to_keep=0, **kwargs):
        if inputs_embeds is not None or labels is not None:
            raise ValueError("the ONNX decoder takes input_ids only (no inputs_embeds, no labels)")
        if kwargs.get("output_attentions") or kwargs.get("output_hidden_states"):
            raise ValueError("the ONNX decoder returns no attentions or hidden states")
        use_cache = config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=config)
        batch, length = input_ids.shape
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        total = past_length + length
        if attention_mask is None:
            attention_mask = torch.ones(batch, total, dtype=torch.long)
        if position_ids is None:
            position_ids = torch.arange(past_length, total, dtype=torch.long).expand(batch, length)
        if torch.is_tensor(logits_to_keep):
            index = logits_to_keep.to(torch.long).reshape(-1)
        else:
            index = torch.arange(length - logits_to_keep if logits_to_keep else 0, length, dtype=torch.long)
        feeds = {"input_ids": as_numpy(input_ids, np.int64), "attention_mask": as_numpy(attention_mask, np.int64),
                 "position_ids": as_numpy(position_ids, np.int64), "logits_index": as_numpy(index, np.int64)}
        layers = past_key_values.layers if past_length and past_key_values is not None else None
        for i in range(n_layers):
            for j, kind in enumerate(("key", "value")):
                name = f"past.{i}.{kind}"
                if layers is not None:
                    tensor = layers[i].keys if j == 0 else layers[i].values
                    feeds[name] = as_numpy(tensor)
                else:
                    heads, dim = shapes[name]
                    feeds[name] = np.zeros((batch, heads, 0, dim), dtype=np.float32)
        results = dict(zip(out_names, session.run(None, feeds)))
        if use_cache:
            for i in range(n_layers):
                layer = past_key_values.layers[i]
                keys = torch.from_numpy(results[f"present.{i}.key"])
                values = torch.from_numpy(results[f"present.{i}.value"])
                if not layer.is_initialized:
                    layer.lazy_initialization(keys, values)
                layer.keys, layer.values = keys, values
        return CausalLMOutputWithPast(logits=torch.from_numpy(results["logits"]),
                                      past_key_values=past_key_values if use_cache else None)

    if len(shapes) != len(past_meta):
        raise ValueError("the decoder graph's past inputs need static head counts and head sizes")
    model.forward = forward
    _free(model)


def _free(module) -> None:
    """Drops the data of every parameter (kept as empty tensors of their dtype, so .dtype/.device still work)."""
    import torch

    for param in module.parameters():
        param.data = torch.empty(0, dtype=param.dtype, device=param.device)


def gate_inputs(model) -> list[dict]:
    """Sample ``generate`` keyword arguments: one prompt, and a left-padded batch of two."""
    import torch

    config = model.config
    pool = torch.tensor(safe_ids(config), dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    pick = lambda *shape: pool[torch.randint(len(pool), shape, generator=gen)]  # noqa: E731
    pad = getattr(model.generation_config, "pad_token_id", None)
    if pad is None:
        pad = getattr(config, "pad_token_id", None)
    if pad is None:
        eos = getattr(config, "eos_token_id", None)
        pad = (eos[0] if isinstance(eos, (list, tuple)) else eos) if eos is not None else int(pool[0])
    single = pick(1, 7)
    batch = pick(2, 9)
    mask = torch.ones(2, 9, dtype=torch.long)
    batch[1, :3] = pad
    mask[1, :3] = 0
    return [
        {"input_ids": single, "attention_mask": torch.ones_like(single)},
        {"input_ids": batch, "attention_mask": mask},
    ]
