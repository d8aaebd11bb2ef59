"""What every ONNX family shares: the opset, tracing one module into a graph, pruning what no
output needs, the numpy views fed to ONNX Runtime and the token ids sample inputs are drawn from."""

from __future__ import annotations

import pathlib

import numpy as np

#: The opset of every graph (the TorchScript exporter's, and onnxruntime's transformer optimizer's).
OPSET = 17


def trace(module, path: pathlib.Path, inputs: dict, outputs: dict) -> None:
    """Traces ``module`` into ``path`` (TorchScript exporter, float32, constants folded).

    ``inputs``: name -> (sample tensor, dynamic axes), in the order ``module.forward`` takes them;
    ``outputs``: name -> dynamic axes, in the order it returns them."""
    import torch

    with torch.no_grad():
        torch.onnx.export(module, tuple(t for t, _ in inputs.values()), str(path), input_names=list(inputs),
                          output_names=list(outputs), opset_version=OPSET, dynamo=False, do_constant_folding=True,
                          dynamic_axes={**{n: a for n, (_, a) in inputs.items()}, **outputs})


def prune(path: pathlib.Path) -> None:
    """Drops the nodes and initializers that no graph output needs (tracing keeps shape-only dependencies)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)  # external data stays where it is, by reference
    needed, keep = {o.name for o in proto.graph.output}, []
    for node in reversed(proto.graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    if len(keep) < len(proto.graph.node):
        inits = [i for i in proto.graph.initializer if i.name in needed]
        for field, kept in ((proto.graph.node, keep[::-1]), (proto.graph.initializer, inits)):
            del field[:]
            field.extend(kept)
        onnx.save(proto, str(path))


def as_numpy(tensor, dtype=None) -> np.ndarray:
    """A C-contiguous numpy view of ``tensor`` (a copy only when it is strided or of another dtype)."""
    array = tensor.detach().numpy()
    return np.ascontiguousarray(array if dtype is None else array.astype(dtype, copy=False))


def safe_ids(config) -> list[int]:
    """Token ids inside the vocabulary that are no special token."""
    special = set()
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "unk_token_id"):
        value = getattr(config, name, None)
        special.update(value if isinstance(value, (list, tuple)) else [value])
    # the config's own vocab_size first: WhisperConfig.get_text_config() rebuilds a config with default sizes
    vocab = min(getattr(config, "vocab_size", None) or config.get_text_config(decoder=True).vocab_size, 4096)
    return [i for i in range(vocab) if i not in special][-max(1, vocab // 2):]
