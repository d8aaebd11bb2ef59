"""The read side of the Hub's own HTTP API over hubserve's store, so that ``huggingface_hub``
(``HfApi(endpoint=...).model_info``, ``hf_hub_download``, ``snapshot_download``) and
``from_pretrained`` with ``HF_ENDPOINT`` read models from a hubserve.

A model the caller may not see answers exactly as a missing one (``resolve_visible``), with
the Hub's ``X-Error-Code`` so that the client raises ``RepositoryNotFoundError`` for both.
Revisions: ``main`` and the model's sha. Files: every regular file of the model folder except
hidden ones, served with the Hub's headers (``ETag`` a sha256, ``X-Repo-Commit``, Range
requests; ``X-Linked-Etag``/``X-Linked-Size`` for large files, as the Hub marks LFS files).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fastapi.responses import FileResponse

from deployments.tasks import task_or_none
from hubserve.errors import EntryNotFound, ModelNotFound, RevisionNotFound
from hubserve.repos.commits import LFS_THRESHOLD
from hubserve.repos.refs import ModelRef

#: The size of a Git LFS pointer file (the Hub's ``pointerSize``).
LFS_POINTER_BYTES = 134


def hub_error(exc: Exception) -> Exception:
    """The Hub's ``X-Error-Code`` on a not-found answer (the client's exception class hangs on it)."""
    code = {ModelNotFound: "RepoNotFound", RevisionNotFound: "RevisionNotFound",
            EntryNotFound: "EntryNotFound"}.get(type(exc))
    if code:
        exc.headers = {**(getattr(exc, "headers", None) or {}), "X-Error-Code": code}
    return exc


def model_files(folder: Path) -> list[tuple[str, Path]]:
    """``(path in the repo, file)`` of every regular file of a model folder, hidden ones left out."""
    out = []
    for current, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            full = Path(current, name)
            if not name.startswith(".") and full.is_file():
                out.append((full.relative_to(folder).as_posix(), full))
    return out


class Digests:
    """sha256 of files, kept while a file's size and mtime stay the same."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int, int], str] = {}

    def of(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._known:
                return self._known[key]
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        with self._lock:
            self._known[key] = digest.hexdigest()
        return self._known[key]


def check_revision(ref: ModelRef, revision: str) -> None:
    if revision not in ("main", ref.sha):
        raise RevisionNotFound(f"Invalid rev id: {revision}")


def library_of(ref: ModelRef) -> str:
    if ref.model_type == "diffusers":
        return "diffusers"
    return "sentence-transformers" if ref.sentence_transformers else "transformers"


def summary(ref: ModelRef, private: bool) -> dict:
    """A model as the Hub's ``/api/models`` list shows it."""
    task = task_or_none(ref)
    library = library_of(ref)
    return {"_id": ref.sha[:24], "id": ref.model_id, "modelId": ref.model_id, "sha": ref.sha, "private": private,
            "pipeline_tag": task, "library_name": library,
            "tags": [t for t in (library, task, ref.model_type or None) if t]}


def matches(ref: ModelRef, author: Optional[str], search: Optional[str], task: Optional[str]) -> bool:
    """The ``author``, ``search`` (in the id, any case) and ``pipeline_tag`` filters of ``/api/models``."""
    if author and ref.model_id.split("/", 1)[0] != author:
        return False
    if search and search.lower() not in ref.model_id.lower():
        return False
    return not task or task_or_none(ref) == task


def model_info(ref: ModelRef, private: bool, digests: Optional[Digests] = None) -> dict:
    """The Hub's model-info JSON of ``ref`` (with file sizes and hashes when ``digests`` is given)."""
    files = model_files(ref.path)
    siblings = []
    for rel, full in files:
        entry = {"rfilename": rel}
        if digests is not None:
            size = full.stat().st_size
            entry.update(size=size, blobId=digests.of(full))
            if size >= LFS_THRESHOLD:
                entry["lfs"] = {"sha256": entry["blobId"], "size": size, "pointerSize": LFS_POINTER_BYTES}
        siblings.append(entry)
    modified = max((full.stat().st_mtime for _, full in files), default=0.0)
    return {
        **summary(ref, private), "disabled": False, "gated": False,
        "lastModified": datetime.fromtimestamp(modified, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "createdAt": datetime.fromtimestamp(modified, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "siblings": siblings,
    }


async def file_response(ref: ModelRef, revision: str, filename: str, digests: Digests) -> FileResponse:
    """One file of the model with the Hub's headers (a HEAD answers the same headers)."""
    check_revision(ref, revision)
    root = Path(os.path.realpath(ref.path))
    # NOTE(hubserve): an HF cache snapshot's files link into its repo's blobs/.
    within = Path(os.path.realpath(ref.cache_repo)) if ref.cache_repo is not None else root
    parts = filename.split("/")
    if not filename or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise EntryNotFound(f"{filename} does not exist in {ref.model_id}")
    path = Path(os.path.realpath(root / filename))
    if not path.is_relative_to(within) or not path.is_file():
        raise EntryNotFound(f"{filename} does not exist in {ref.model_id}")
    digest = await asyncio.to_thread(digests.of, path)
    size = path.stat().st_size
    headers = {"X-Repo-Commit": ref.sha, "Accept-Ranges": "bytes"}
    if size >= LFS_THRESHOLD:
        headers.update({"X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(size)})
    response = FileResponse(path, headers=headers, media_type="application/octet-stream")
    response.headers["etag"] = f'"{digest}"'
    return response


def _entry(rel: str, full: Path, digests: Digests) -> dict:
    size = full.stat().st_size
    entry = {"type": "file", "oid": digests.of(full), "size": size, "path": rel}
    if size >= LFS_THRESHOLD:
        entry["lfs"] = {"oid": entry["oid"], "size": size, "pointerSize": LFS_POINTER_BYTES}
    return entry


def _folder(rel: str, ref: ModelRef) -> dict:
    return {"type": "directory", "oid": hashlib.sha1(f"{ref.sha}:{rel}".encode()).hexdigest(), "path": rel}


def tree(ref: ModelRef, revision: str, prefix: str, recursive: bool, digests: Digests) -> list[dict]:
    """``/api/models/{id}/tree/{rev}[/{path}]``: the files and folders under ``prefix``."""
    check_revision(ref, revision)
    prefix = prefix.strip("/")
    files = model_files(ref.path)
    folders = sorted({"/".join(rel.split("/")[:i]) for rel, _ in files for i in range(1, rel.count("/") + 1)})
    if prefix and prefix not in folders:
        raise EntryNotFound(f"{prefix} does not exist in {ref.model_id}")
    start = f"{prefix}/" if prefix else ""

    def wanted(rel: str) -> bool:
        return rel.startswith(start) and (recursive or "/" not in rel[len(start):])

    return ([_folder(rel, ref) for rel in folders if wanted(rel)]
            + [_entry(rel, full, digests) for rel, full in files if wanted(rel)])


def paths_info(ref: ModelRef, revision: str, paths: list[str], digests: Digests) -> list[dict]:
    """``POST /api/models/{id}/paths-info/{rev}``: the entries of ``paths`` that exist."""
    check_revision(ref, revision)
    files = dict(model_files(ref.path))
    folders = {"/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/") + 1)}
    out = []
    for path in dict.fromkeys(p.strip("/") for p in paths):
        if path in files:
            out.append(_entry(path, files[path], digests))
        elif path in folders:
            out.append(_folder(path, ref))
    return out
