"""ONNX exports of model revisions, made once and kept on disk.

An export lives at ``<cache>/<org>--<name>/<sha>/<variant>-<versions>/`` where the
variant is ``fp32`` or ``int8`` and ``versions`` digests the library versions that
made it, so an upgrade never reuses a stale export. A file lock keeps replicas
from exporting the same entry at once; an entry is built in a temporary folder,
described by a manifest of its files and sizes, and renamed into place, so a
crashed export leaves nothing that looks complete. A broken entry (missing
manifest, missing or resized file) is removed and rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

logger = logging.getLogger(__name__)

MANIFEST = "hubserve-export.json"
#: Bumped when the layout of an export changes.
FORMAT = 1
_LIBRARIES = ("optimum", "optimum-onnx", "onnxruntime", "onnx", "transformers", "torch")


def versions_digest() -> str:
    """A short digest of the versions of every library that shapes an export."""
    parts = [f"format={FORMAT}"]
    for name in _LIBRARIES:
        try:
            parts.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name}=none")
    return hashlib.sha1(";".join(parts).encode()).hexdigest()[:12]


def entry_dir(cache_root: Path, model_key: str, revision: str, variant: str) -> Path:
    """Where the export of one model revision and variant lives."""
    return cache_root / model_key / revision / f"{variant}-{versions_digest()}"


def is_complete(entry: Path) -> bool:
    """Whether ``entry`` holds every file its manifest lists, at the listed sizes."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all(
        (entry / name).is_file() and (entry / name).stat().st_size == size for name, size in files.items()
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_export(entry: Path, build: Callable[[Path], None]) -> Path:
    """The complete export at ``entry``, building it with ``build(tmp_folder)`` if needed.

    Args:
        entry: the cache entry folder.
        build: writes the export's files into the folder it is given.

    Returns:
        ``entry``, complete.
    """
    if is_complete(entry):
        return entry
    with _locked(entry.with_name(entry.name + ".lock")):
        if is_complete(entry):  # another replica finished it while we waited
            return entry
        if entry.exists():
            logger.warning("rebuilding broken ONNX export %s", entry)
            shutil.rmtree(entry)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            build(tmp)
            files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}
            (tmp / MANIFEST).write_text(json.dumps({"files": files, "versions": versions_digest()}))
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry

