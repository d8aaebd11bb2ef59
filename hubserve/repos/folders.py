"""How a model folder is read: the file that makes it a model, its revision digest and weights
size, its card's front matter, and the layout of an HF cache repo (also that of pulled models)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from pathlib import Path
from typing import Mapping, Optional

import yaml

_SHA = re.compile(r"[0-9a-f]{40}")
PKG_SCHEME = "pkg://"
#: The file that makes a folder a model: transformers' config, or a diffusers pipeline's index.
CONFIG_FILES = ("config.json", "model_index.json")
#: The ``model_type`` of a diffusers pipeline (architectures: its pipeline class).
DIFFUSERS = "diffusers"
#: What a timm checkpoint (``config.json`` with ``architecture``) is to transformers.
TIMM, TIMM_ARCHITECTURE = "timm_wrapper", "TimmWrapperForImageClassification"


def config_file(folder: Path) -> Optional[Path]:
    """The model's config file in ``folder`` (``CONFIG_FILES``), or None when it has none.

    Every name is looked at, so that a model costs the same file system work as no model."""
    found = [folder / name for name in CONFIG_FILES if (folder / name).is_file()]
    return found[0] if found else None

def read_front_matter(readme: Path) -> dict:
    """The YAML front matter of a model card, or ``{}``."""
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def resolve_pkg_path(spec: str) -> Path:
    """Turns ``pkg://module`` into ``module.get_model_path()``."""
    module = importlib.import_module(spec[len(PKG_SCHEME):])
    return Path(module.get_model_path())


WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".onnx", ".pt", ".pth", ".h5", ".msgpack", ".ckpt"})


def scan_folder(path: Path) -> tuple[str, int]:
    """One walk of a model folder.

    Returns:
        A 40-hex digest of file names, sizes and modification times (the revision
        id of a plain folder), and the total bytes of its weight files.
    """
    h = hashlib.sha1()
    weights = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = Path(root, name)
            try:
                st = full.stat()
            except OSError:
                continue
            h.update(f"{full.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            if full.suffix in WEIGHT_SUFFIXES:
                weights += st.st_size
    return h.hexdigest(), weights


def repo_folder_name(model_id: str) -> str:
    """The HF cache's folder of a model repo: ``models--<org>--<name>``."""
    return "models--" + model_id.replace("/", "--")


def cached_snapshot(repo: Path) -> Optional[tuple[Path, str]]:
    """The snapshot ``refs/main`` names in an HF cache repo folder, and its sha, if it holds a model."""
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    sha = ref.read_text().strip()
    snapshot = repo / "snapshots" / sha
    if _SHA.fullmatch(sha) and config_file(snapshot) is not None:
        return snapshot, sha
    return None


#: What ``hubserve.repos.hub`` keeps of a pulled repo, beside its ``snapshots/``.
PULLED_INFO = "hubserve.json"


def pulled_info(repo: Path) -> dict:
    """The upstream facts of a pulled repo (``pipeline_tag``, ``private``...), or ``{}``."""
    try:
        data = json.loads((repo / PULLED_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def hf_cache_dir(setting: Optional[str], env: Mapping[str, str]) -> Optional[Path]:
    """The HF hub cache to read: an explicit folder, ``auto`` (env or default) or none."""
    if not setting:
        return None
    if setting != "auto":
        return Path(setting).expanduser()
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = Path(env.get("HF_HOME") or Path("~/.cache/huggingface").expanduser())
    return home / "hub"
