"""What a model folder may hold: nothing that runs code, nothing that points outside it.

One check serves uploads (a 400 before the model is installed) and the loader (a load
error for a folder copied into the store). Refused:

- code: ``*.py`` files and a ``custom_generate/`` folder (transformers' ``generate``
  imports ``custom_generate/generate.py``);
- links and special files (an HF cache snapshot may link into its own repo's ``blobs/``);
- JSON files, every one whatever its size: one too large or not parseable, remote code
  (``auto_map``, ``custom_pipelines``), a path field that leaves the folder, an unsafe
  diffusers ``model_index.json`` (see ``hubserve.repos.model_json``);
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
from pathlib import Path
from typing import Optional

from hubserve.config.limits import LimitsConfig
from .model_json import Folder, json_problem

#: Weight formats that unpickle (and so can run code) when loaded.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})
CODE_SUFFIXES = frozenset({".py", ".pyc", ".pyo"})
CODE_FOLDERS = frozenset({"custom_generate"})


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


def inspect_folder(folder: Path, limits: LimitsConfig, *, links_within: Optional[Path] = None) -> FolderReport:
    """Checks every entry of a model folder.

    Args:
        folder: the model folder.
        limits: the server's ``limits`` (``max_model_json_bytes``).
        links_within: links are allowed when they resolve to a regular file inside this
            folder (an HF cache repo's ``blobs/``); None refuses every link.
    """
    report = FolderReport()
    root = Path(folder)
    paths = Folder(root, links_within)
    limit = paths.links_within
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
            elif suffix == ".json":
                problem = json_problem(full, rel, paths, limits.max_model_json_bytes)
                if problem is not None:
                    report.problems.append(problem)
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
