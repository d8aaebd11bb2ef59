"""The encoder-decoder ONNX families: ``speech-seq2seq`` (Whisper), ``seq2seq-lm`` (BART/T5 style),
``vision2seq`` (an image encoder and a text decoder, ``VisionEncoderDecoderModel``).

Hybrid attach, as in ``onnx_decoder``: ``model.generate`` (Whisper's ``WhisperGenerationMixin``
included) stays transformers' code; ``attach`` swaps the encoder's and the model's ``forward``.
Graphs: ``encoder.onnx`` (``input_features``, ``pixel_values``, or ``input_ids`` + ``attention_mask``, to
``last_hidden_state``); ``cross.onnx`` (``encoder_hidden_states`` to every layer's
``cross.{i}.key|value``: run ONCE per generation, on the first decoder step, and kept in the
``EncoderDecoderCache``'s cross-attention cache); ``decoder.onnx`` (``decoder_input_ids``,
``decoder_attention_mask`` over past + new, ``decoder_position_ids`` when the decoder takes them,
``encoder_attention_mask`` for text encoders, ``past.{i}.*`` and ``cross.{i}.*`` to ``logits``
and ``present.{i}.key|value``).

Refused (``ValueError``): decoder-only models, self-attention caches that are not plain
keys/values (sliding-window, hybrid), and encoders taking anything else.
"""

from __future__ import annotations

import inspect
import pathlib

import numpy as np

from .onnx_graphs import as_numpy as _np
from .onnx_graphs import prune, safe_ids, trace

GRAPHS: tuple[str, ...] = ("encoder.onnx", "decoder.onnx", "cross.onnx")
_KINDS = ("key", "value")
#: What an encoder may take: its main input, and the float32 ones among them.
_MAIN_INPUTS = ("input_features", "input_ids", "pixel_values")
_FLOAT_INPUTS = ("input_features", "pixel_values")


def _plan(model) -> dict:
    """What the graphs look like for this model; ValueError when it is refused."""
    from transformers import DynamicCache

    config = model.config
    if not getattr(config, "is_encoder_decoder", False) or not hasattr(model, "get_encoder"):
        raise ValueError(f"{type(model).__name__} is not an encoder-decoder model")
    main = model.get_encoder().main_input_name
    if main not in _MAIN_INPUTS:
        raise ValueError(f"{type(model).__name__}'s encoder takes {main!r}; only {', '.join(_MAIN_INPUTS)} are "
                         "supported")
    if "past_key_values" not in inspect.signature(model.forward).parameters:
        raise ValueError(f"{type(model).__name__}.forward takes no past_key_values")
    # the model's own config first: WhisperConfig.get_text_config(decoder=True) rebuilds a config with default sizes
    text = config.get_text_config(decoder=True)
    layers = next((getattr(c, n) for c in (config, text) for n in ("decoder_layers", "num_decoder_layers")
                   if getattr(c, n, None)), None) or getattr(text, "num_hidden_layers", None)
    if not layers:
        raise ValueError(f"cannot tell the number of decoder layers of {type(model).__name__}")
    positions = "decoder_position_ids" in inspect.signature(model.forward).parameters
    kinds = {type(layer).__name__ for layer in DynamicCache(config=config).layers}
    if kinds - {"DynamicLayer"}:
        raise ValueError(f"{type(model).__name__} needs cache layers {sorted(kinds)}; only plain key/value layers "
                         "(DynamicLayer) are supported, not sliding-window or hybrid caches")
    return {"main": main, "layers": int(layers), "text": main == "input_ids", "positions": positions}


def _encoder_sample(model, plan: dict, batch: int):
    import torch

    gen = torch.Generator().manual_seed(0)
    if plan["text"]:
        pool = torch.tensor(safe_ids(model.config))
        ids = pool[torch.randint(len(pool), (batch, 6), generator=gen)]
        mask = torch.ones_like(ids)
        mask[0, :2] = 0  # a padded source
        return {"input_ids": ids, "attention_mask": mask}
    if plan["main"] == "pixel_values":
        from .onnx_encoder import _image_shape

        return {"pixel_values": torch.randn(batch, *_image_shape(model), generator=gen)}
    frames = 2 * getattr(model.config, "max_source_positions", 1500)  # Whisper: 3000 mel frames (30 s)
    return {"input_features": torch.randn(batch, model.config.num_mel_bins, frames, generator=gen)}


def _cross_attentions(model, plan: dict) -> list:
    """The decoder's cross-attention modules, in layer order (found by one traced torch step), or [] if unsure."""
    import torch

    found = {}

    def hook(module, args, kwargs):
        if kwargs.get("key_value_states") is not None and isinstance(getattr(module, "layer_idx", None), int):
            found.setdefault(module.layer_idx, module)

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in model.modules()]
    try:
        with torch.no_grad():
            sample = _encoder_sample(model, plan, batch=1)
            start = torch.tensor([[safe_ids(model.config)[0]]])
            model(**sample, decoder_input_ids=start, use_cache=True)
    finally:
        for handle in handles:
            handle.remove()
    return [found[i] for i in range(plan["layers"])] if sorted(found) == list(range(plan["layers"])) else []


def _modules(model, plan: dict):
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    layers, attentions = plan["layers"], _cross_attentions(model, plan)

    class Hold(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

    class Encoder(Hold):
        def forward(self, *inputs):
            kwargs = dict(zip(("input_ids", "attention_mask") if plan["text"] else (plan["main"],), inputs))
            return self.model.get_encoder()(**kwargs).last_hidden_state

    class Cross(Hold):
        def forward(self, encoder_hidden_states):
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            if attentions:  # only the cross-attention modules: the graph holds just their key/value projections
                query = encoder_hidden_states[:, :1]
                for module in attentions:
                    module(query, key_value_states=encoder_hidden_states, past_key_values=cache)
            else:
                start = torch.zeros_like(encoder_hidden_states[:, :1, 0], dtype=torch.long)
                self.model(decoder_input_ids=start, encoder_outputs=(encoder_hidden_states,),
                           past_key_values=cache, use_cache=True)
            return tuple(t for layer in cache.cross_attention_cache.layers[:layers] for t in (layer.keys, layer.values))

    class Decoder(Hold):
        hidden = 0  # the encoder's hidden size, set once the encoder has run

        def forward(self, decoder_input_ids, decoder_attention_mask, *rest):
            rest = list(rest)
            extra = {}
            if plan["positions"]:
                extra["decoder_position_ids"] = rest.pop(0)
            if plan["text"]:
                extra["attention_mask"] = rest.pop(0)
            own, cross = DynamicCache(), DynamicCache()
            for i in range(layers):
                own.update(rest[4 * i], rest[4 * i + 1], i)
                cross.update(rest[4 * i + 2], rest[4 * i + 3], i)
            cache = EncoderDecoderCache(own, cross)
            for i in range(layers):
                cache.is_updated[i] = True
            key = rest[2]  # [batch, heads, source, head_dim]: stands in for the encoder states (shape only)
            states = key[:, 0, :, :1].expand(-1, -1, self.hidden)
            out = self.model(decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_attention_mask,
                             encoder_outputs=(states,), past_key_values=cache, use_cache=True, **extra)
            own = out.past_key_values.self_attention_cache.layers
            return (out.logits, *(t for layer in own for t in (layer.keys, layer.values)))

    return Encoder().eval(), Cross().eval(), Decoder().eval()


def export(model, folder: pathlib.Path) -> None:
    """Writes ``encoder.onnx``, ``decoder.onnx`` and ``cross.onnx`` (float32); ValueError when refused."""
    import torch

    plan = _plan(model)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers, config = plan["layers"], model.config
    previous, grad = getattr(config, "_attn_implementation", None), torch.is_grad_enabled()
    config._attn_implementation = "eager"
    torch.set_grad_enabled(False)
    batch, seq, enc = {0: "batch"}, {0: "batch", 1: "sequence"}, {0: "batch", 1: "encoded"}
    try:
        encoder_m, cross_m, decoder_m = _modules(model, plan)
        sample = _encoder_sample(model, plan, batch=2)
        trace(encoder_m, folder / "encoder.onnx", {n: (t, batch if t.is_floating_point() else enc)
                                                  for n, t in sample.items()}, {"last_hidden_state": enc})
        states = encoder_m(*sample.values())
        decoder_m.hidden = states.shape[-1]
        cross_axes = {f"cross.{i}.{k}": {0: "batch", 2: "encoded"} for i in range(layers) for k in _KINDS}
        trace(cross_m, folder / "cross.onnx", {"encoder_hidden_states": (states, enc)}, cross_axes)
        prune(folder / "cross.onnx")
        cross = cross_m(states)
        inputs = {"decoder_input_ids": (torch.tensor([safe_ids(config)[:2]] * 2), seq),
                  "decoder_attention_mask": (torch.ones(2, 5, dtype=torch.long), {0: "batch", 1: "total"})}
        if plan["positions"]:
            inputs["decoder_position_ids"] = (torch.tensor([[3, 4]] * 2), seq)
        if plan["text"]:
            inputs["encoder_attention_mask"] = (sample["attention_mask"], enc)
        outputs = {"logits": seq}
        for i in range(layers):
            for j, kind in enumerate(_KINDS):
                shape = cross[2 * i + j].shape
                inputs[f"past.{i}.{kind}"] = (torch.randn(2, shape[1], 3, shape[3]), {0: "batch", 2: "past"})
                outputs[f"present.{i}.{kind}"] = {0: "batch", 2: "total"}
            for j, kind in enumerate(_KINDS):
                inputs[f"cross.{i}.{kind}"] = (cross[2 * i + j], cross_axes[f"cross.{i}.{kind}"])
        trace(decoder_m, folder / "decoder.onnx", inputs, outputs)
        prune(folder / "decoder.onnx")
    finally:
        config._attn_implementation = previous
        torch.set_grad_enabled(grad)


def attach(model, sessions: dict) -> None:
    """Runs ``model``'s encoder and decoder on the three sessions and frees the torch weights they replace."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache
    from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

    plan = _plan(model)
    layers = plan["layers"]
    enc_s, dec_s, cross_s = (sessions[name] for name in GRAPHS)
    enc_inputs, dec_inputs = [i.name for i in enc_s.get_inputs()], {i.name: i.shape for i in dec_s.get_inputs()}
    if len(cross_s.get_outputs()) != 2 * layers or len(dec_s.get_outputs()) != 1 + 2 * layers:
        raise ValueError(f"the graphs do not match {type(model).__name__} ({layers} decoder layers)")
    def encode(input_ids=None, attention_mask=None, input_features=None, pixel_values=None, **kwargs):
        if kwargs.get("output_attentions") or kwargs.get("output_hidden_states"):
            raise ValueError("the ONNX encoder returns no attentions or hidden states")
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "input_features": input_features,
                 "pixel_values": pixel_values}
        if plan["text"] and attention_mask is None:
            given["attention_mask"] = torch.ones_like(input_ids)
        feeds = {n: _np(given[n], np.float32 if n in _FLOAT_INPUTS else np.int64) for n in enc_inputs}
        return BaseModelOutput(last_hidden_state=torch.from_numpy(enc_s.run(None, feeds)[0]))

    def forward(input_features=None, input_ids=None, pixel_values=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, past_key_values=None, decoder_inputs_embeds=None,
                decoder_position_ids=None, labels=None, use_cache=None, **kwargs):
        if decoder_inputs_embeds is not None or labels is not None:
            raise ValueError("the ONNX decoder takes decoder_input_ids only (no embeddings, no labels)")
        if kwargs.get("output_attentions") or kwargs.get("output_hidden_states"):
            raise ValueError("the ONNX decoder returns no attentions or hidden states")
        if encoder_outputs is None:
            encoder_outputs = encode(input_ids=input_ids, attention_mask=attention_mask, input_features=input_features,
                                     pixel_values=pixel_values)
        states = encoder_outputs[0]
        use_cache = model.config.use_cache if use_cache is None else use_cache
        if past_key_values is None or not use_cache:
            past_key_values = EncoderDecoderCache(DynamicCache(), DynamicCache())
        own, cross = past_key_values.self_attention_cache, past_key_values.cross_attention_cache
        if cross.get_seq_length() == 0:  # first step: the cross-attention keys/values, once
            values = cross_s.run(None, {"encoder_hidden_states": _np(states, np.float32)})
            for i in range(layers):
                cross.update(torch.from_numpy(values[2 * i]), torch.from_numpy(values[2 * i + 1]), i)
                past_key_values.is_updated[i] = True
            # every beam of one input holds that input's cross keys/values (generate expands the encoder output
            # per beam) and beam search reorders beams within an input: copying them each step changes nothing
            cross.reorder_cache = lambda beam_idx: None
        (batch, length), past = decoder_input_ids.shape, own.get_seq_length()
        mask = decoder_attention_mask
        if mask is None or mask.shape[-1] != past + length:
            mask = torch.ones(batch, past + length, dtype=torch.long)
        feeds = {"decoder_input_ids": _np(decoder_input_ids, np.int64), "decoder_attention_mask": _np(mask, np.int64)}
        if "decoder_position_ids" in dec_inputs:
            if decoder_position_ids is None:
                decoder_position_ids = torch.arange(past, past + length).expand(batch, length)
            feeds["decoder_position_ids"] = _np(decoder_position_ids, np.int64)
        if "encoder_attention_mask" in dec_inputs:
            enc_mask = attention_mask if attention_mask is not None else torch.ones(states.shape[:2], dtype=torch.long)
            feeds["encoder_attention_mask"] = _np(enc_mask, np.int64)
        for i in range(layers):
            for kind, attr in zip(_KINDS, ("keys", "values")):
                feeds[f"cross.{i}.{kind}"] = _np(getattr(cross.layers[i], attr))
                shape = dec_inputs[f"past.{i}.{kind}"]
                feeds[f"past.{i}.{kind}"] = (_np(getattr(own.layers[i], attr)) if past else
                                             np.zeros((batch, shape[1], 0, shape[3]), dtype=np.float32))
        results = dec_s.run(None, feeds)
        for i in range(layers):  # the presents replace the self-attention cache (views of the ORT outputs)
            keys, values = torch.from_numpy(results[1 + 2 * i]), torch.from_numpy(results[2 + 2 * i])
            if i < len(own.layers) and own.layers[i].is_initialized:
                own.layers[i].keys, own.layers[i].values = keys, values
            else:
                own.update(keys, values, i)
        return Seq2SeqLMOutput(logits=torch.from_numpy(results[0]), encoder_last_hidden_state=states,
                               past_key_values=past_key_values if use_cache else None)

    model.get_encoder().forward = encode
    model.forward = forward
    for param in model.parameters():
        param.data = torch.empty(0, dtype=param.dtype, device=param.device)


def gate_inputs(model) -> list[dict]:
    """Sample ``generate`` keyword arguments from the config alone: one input, and a batch of two."""
    plan = _plan(model)
    one, two = (_encoder_sample(model, plan, batch=b) for b in (1, 2))
    if plan["text"]:
        one["attention_mask"][:] = 1
        return [one, two]
    return [{plan["main"]: sample[plan["main"]].clamp(-1.0, 1.0)} for sample in (one, two)]
