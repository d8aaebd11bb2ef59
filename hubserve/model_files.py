"""What a model folder may hold: nothing that runs code, nothing that points outside it.

One check serves uploads (a 400 before the model is installed) and the loader (a load
error for a folder copied into the store). Refused:

- code: ``*.py`` files and a ``custom_generate/`` folder (transformers' ``generate``
  imports ``custom_generate/generate.py``), ``auto_map`` or ``custom_pipelines`` in any
  JSON config (they name remote code classes);
- links and special files (an HF cache snapshot may link into its own repo's ``blobs/``);
- path fields that leave the folder: ``weight_map`` of a safetensors index, the
  ``*_file``/``*_files`` fields of tokenizer and processor configs, sentence-transformers
  ``modules.json`` paths;
- a diffusers ``model_index.json`` naming a custom pipeline, a component from a module other
  than diffusers or transformers, or a component folder outside the model folder;
- pickle weights (``*.bin``, ``*.pt``...: unpickling runs code) unless the config trusts
  the model. A folder with safetensors beside them loads the safetensors only
  (``without_pickles``); one with pickle weights only is refused.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional

#: Weight formats that unpickle (and so can run code) when loaded.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})
CODE_SUFFIXES = frozenset({".py", ".pyc", ".pyo"})
CODE_FOLDERS = frozenset({"custom_generate"})
CODE_KEYS = ("auto_map", "custom_pipelines")
#: JSON files larger than this are not parsed (tokenizer.json vocabularies hold no paths).
MAX_JSON_BYTES = 5 * 1024**2
SKIPPED_JSON = frozenset({"tokenizer.json", "vocab.json"})


@dataclass
class FolderReport:
    """What ``inspect_folder`` found.

    Attributes:
        problems: one sentence per refused thing (empty: the folder is acceptable).
        pickles: the pickle files, relative to the folder.
        safetensors: whether the folder has safetensors weights.
    """

    problems: list[str] = field(default_factory=list)
    pickles: list[str] = field(default_factory=list)
    safetensors: bool = False


def escapes(value: Any) -> bool:
    """Whether a path field's value could leave its folder (absolute, ``..``, ``~``, backslash, NUL)."""
    if not isinstance(value, str):
        return False
    if not value or "\x00" in value or "\\" in value or value.startswith("~"):
        return bool(value)
    path = PurePosixPath(value)
    return path.is_absolute() or ".." in path.parts


def _json_problems(rel: str, data: Any) -> list[str]:
    if not isinstance(data, dict):
        return []
    found = [f"{rel} has `{key}`, which names code to import" for key in CODE_KEYS if key in data]
    name = PurePosixPath(rel).name
    if name.endswith(".index.json"):
        targets = (data.get("weight_map") or {}).values() if isinstance(data.get("weight_map"), dict) else []
        found += [f"{rel} maps weights to {t!r}, outside the model folder" for t in targets if escapes(t)]
    for key, value in data.items():
        if isinstance(key, str) and (key.endswith("_file") or key.endswith("_files")):
            values = value if isinstance(value, list) else [value]
            found += [f"{rel}: `{key}` points outside the model folder ({v!r})" for v in values if escapes(v)]
    return found


#: The libraries a diffusers pipeline's components may come from.
PIPELINE_LIBRARIES = frozenset({"diffusers", "transformers"})


def _pipeline_index_problems(rel: str, data: Any) -> list[str]:
    """A diffusers ``model_index.json``: ``{"_class_name": "...Pipeline", "<folder>": [library, class]}``."""
    if not isinstance(data, dict):
        return [f"{rel} is not a JSON object"]
    found = _json_problems(rel, data)
    name = data.get("_class_name")
    if not isinstance(name, str) or not name.isidentifier():
        found.append(f"{rel}: `_class_name` {name!r} is not a diffusers pipeline class (a custom pipeline is code)")
    for key, value in data.items():
        if key.startswith("_") or not isinstance(value, list):
            continue
        if not key.isidentifier():
            found.append(f"{rel}: component folder {key!r} is not a plain name inside the model folder")
        library, cls = (value + [None, None])[:2]
        if library is None and cls is None:
            continue
        if library not in PIPELINE_LIBRARIES or not isinstance(cls, str) or not cls.isidentifier():
            found.append(f"{rel}: component `{key}` comes from {library!r}, not diffusers or transformers")
    return found


def _modules_problems(rel: str, data: Any) -> list[str]:
    modules = data if isinstance(data, list) else []
    return [f"{rel}: module path {m.get('path')!r} points outside the model folder"
            for m in modules if isinstance(m, dict) and escapes(m.get("path"))]


def inspect_folder(folder: Path, *, links_within: Optional[Path] = None) -> FolderReport:
    """Checks every entry of a model folder.

    Args:
        folder: the model folder.
        links_within: links are allowed when they resolve to a regular file inside this
            folder (an HF cache repo's ``blobs/``); None refuses every link.
    """
    report = FolderReport()
    root = Path(folder)
    limit = Path(os.path.realpath(links_within)) if links_within is not None else None
    for current, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            full = Path(current, name)
            rel = full.relative_to(root).as_posix()
            try:
                mode = os.lstat(full).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                target = Path(os.path.realpath(full))
                inside = limit is not None and target.is_file() and target.is_relative_to(limit)
                if not inside:
                    report.problems.append(f"{rel} is a link")
                    continue
                mode = os.stat(full).st_mode
            if stat.S_ISDIR(mode):
                if name in CODE_FOLDERS:
                    report.problems.append(f"{rel}/ holds code that generate() would import")
                continue
            if not stat.S_ISREG(mode):
                report.problems.append(f"{rel} is not a regular file")
                continue
            suffix = full.suffix.lower()
            if suffix in CODE_SUFFIXES:
                report.problems.append(f"{rel} is code")
            elif suffix in PICKLE_SUFFIXES:
                report.pickles.append(rel)
            elif suffix == ".safetensors":
                report.safetensors = True
            elif suffix == ".json" and name not in SKIPPED_JSON and full.stat().st_size <= MAX_JSON_BYTES:
                try:
                    data = json.loads(full.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, ValueError):
                    continue
                check = {"modules.json": _modules_problems, "model_index.json": _pipeline_index_problems}.get(
                    name, _json_problems)
                report.problems += check(rel, data)
        dirs[:] = [d for d in dirs if not os.path.islink(Path(current, d))]
    return report


def refusals(report: FolderReport, trust_pickle: bool, *, any_pickle: bool) -> list[str]:
    """The problems of a folder, plus its pickle files where they are not allowed.

    Args:
        report: from ``inspect_folder``.
        trust_pickle: the config trusts this model's pickle files.
        any_pickle: refuse every pickle file (uploads), not only pickle-only weights (loads).
    """
    problems = list(report.problems)
    if report.pickles and not trust_pickle and (any_pickle or not report.safetensors):
        shown = ", ".join(report.pickles[:5])
        problems.append(f"pickle weight files ({shown}) can run code when loaded: convert them to "
                        "safetensors, or trust this model's pickle files in the server config "
                        "(models.<id>.trust_pickle: true)")
    return problems


def without_pickles(folder: Path, report: FolderReport) -> tempfile.TemporaryDirectory:
    """A temporary view of ``folder`` without its pickle files (links to the rest), so that a
    loader cannot fall back to them. Use it as a context manager while loading."""
    view = tempfile.TemporaryDirectory(prefix="hubserve-view-")
    skip = set(report.pickles)
    for current, dirs, files in os.walk(folder):
        rel_dir = Path(current).relative_to(folder)
        Path(view.name, rel_dir).mkdir(parents=True, exist_ok=True)
        for name in files:
            rel = (rel_dir / name).as_posix()
            if rel not in skip:
                os.symlink(os.path.realpath(Path(current, name)), Path(view.name, rel_dir, name))
    return view


def read_json_object(path: Path) -> dict:
    """A model file's JSON object, or ``{}`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
