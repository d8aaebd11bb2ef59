"""Commits to a model repo, as ``huggingface_hub``'s ``create_commit`` sends them.

A commit is an NDJSON body: a ``header`` (summary, ``parentCommit``), then ``file`` entries
(small files, base64 inline), ``lfsFile`` entries (large or binary files, uploaded before
through the Git LFS batch API into ``LfsObjects``, named by sha256 and size), and
``deletedFile``/``deletedFolder`` entries. ``CommitBuilder`` reads the lines into a private
folder as they arrive (each path checked as an archive entry is, every size bounded);
``apply_commit`` makes the new model folder from the current one and the commit, which the
caller validates and installs whole (``uploads.install``), so a repo changes whole or not at
all.

LFS objects arrive by ``PUT`` to a URL the batch answer gives, which carries no token: the
URL's single-use ticket, recorded on the store's file system (so any ingress replica may take
the upload), names the repo, object and size it admits; the body is checked against both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Optional

import orjson

from .errors import ApiError, EntryNotFound, InvalidInput, PayloadTooLarge
from .model_files import CODE_FOLDERS, CODE_SUFFIXES, PICKLE_SUFFIXES
from .uploads import MAX_FILES, _member_path, staging_dir

#: Files at least this large, or with a NUL byte in their first bytes, go through LFS.
REGULAR_MAX_BYTES = 10 * 1024**2
#: The longest NDJSON line of a commit (a regular file, base64, plus its JSON).
MAX_LINE_BYTES = REGULAR_MAX_BYTES * 4 // 3 + 64 * 1024
TICKET_TTL_S = 3600.0
_OID = re.compile(r"[0-9a-f]{64}")


class PreconditionFailed(ApiError):
    """The commit's ``parentCommit`` is not the repo's revision any more (412)."""

    status_code = 412
    error_type = "conflict"


def repo_path(path: str) -> str:
    """The safe form of a path in a repo (``a/b.json``), or InvalidInput."""
    if not isinstance(path, str):
        raise InvalidInput("A path in the repo must be a string")
    return _member_path(path).as_posix()


def ignored(path: str) -> bool:
    """Hidden files (``.gitattributes``, ``.cache/...``) are not part of a model: never stored."""
    return any(part.startswith(".") for part in PurePosixPath(path).parts)


def refused(path: str, trust_pickle: bool) -> Optional[str]:
    """Why a file may not be part of a model (code, pickle weights), or None."""
    pure = PurePosixPath(path)
    suffix = pure.suffix.lower()
    if suffix in CODE_SUFFIXES or any(part in CODE_FOLDERS for part in pure.parts[:-1]):
        return f"{path} is code; a model may not hold code"
    if suffix in PICKLE_SUFFIXES and not trust_pickle:
        return (f"{path} is a pickle weight file, which can run code when loaded: convert it to safetensors, "
                "or trust this model's pickle files in the server config (models.<id>.trust_pickle: true)")
    return None


def upload_mode(sample: bytes, size: int) -> str:
    """``regular`` (inline in the commit) or ``lfs``, as the Hub decides it."""
    return "lfs" if size >= REGULAR_MAX_BYTES or b"\x00" in sample else "regular"


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file (what the client compares a regular file against)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_oid(oid: object) -> str:
    if not isinstance(oid, str) or not _OID.fullmatch(oid):
        raise InvalidInput(f"Invalid LFS object id {oid!r}: a sha256 in 64 lowercase hex digits")
    return oid


class LfsObjects:
    """Uploaded LFS objects waiting for their commit, in the store's staging folder.

    Args:
        store: the model store folder (objects live on its file system, so a commit links them).
    """

    def __init__(self, store: Path) -> None:
        self.root = staging_dir(store) / "lfs"
        self.objects = self.root / "objects"
        self.tickets = self.root / "tickets"

    def path(self, oid: str) -> Path:
        return self.objects / check_oid(oid)

    def has(self, oid: str, size: int) -> bool:
        path = self.path(oid)
        return path.is_file() and path.stat().st_size == size

    def ticket(self, model_id: str, oid: str, size: int) -> str:
        """A single-use ticket admitting one upload of ``oid`` (``size`` bytes) to ``model_id``."""
        self.tickets.mkdir(parents=True, exist_ok=True)
        ticket = secrets.token_urlsafe(32)
        record = {"model_id": model_id, "oid": check_oid(oid), "size": size, "expires": time.time() + TICKET_TTL_S}
        (self.tickets / ticket).write_bytes(orjson.dumps(record))
        return ticket

    def take(self, ticket: str) -> dict:
        """The record of a valid ticket, removed so that it serves once (404 otherwise)."""
        missing = EntryNotFound("This upload URL is unknown or expired")
        if not re.fullmatch(r"[A-Za-z0-9_-]{40,64}", ticket or ""):
            raise missing
        path = self.tickets / ticket
        claimed = path.with_name(f"{ticket}.{uuid.uuid4().hex}.taken")
        try:
            os.rename(path, claimed)
        except OSError:
            raise missing from None
        try:
            record = orjson.loads(claimed.read_bytes())
        finally:
            claimed.unlink(missing_ok=True)
        if record.get("expires", 0) < time.time():
            raise missing
        return record

    def receiver(self, record: dict) -> "LfsReceiver":
        """Where the body of the upload ``record`` (from ``take``) is written."""
        return LfsReceiver(self, record)

    def drop(self, oids: Iterable[str]) -> None:
        for oid in oids:
            self.path(oid).unlink(missing_ok=True)

    def sweep(self, max_age_s: float = 24 * 3600.0) -> None:
        """Removes objects no commit took and tickets long expired."""
        now = time.time()
        for folder in (self.objects, self.tickets):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                try:
                    if now - path.stat().st_mtime > max_age_s:
                        path.unlink()
                except OSError:
                    continue


class LfsReceiver:
    """One LFS upload: kept only if it is exactly the object its ticket names.

    ``write`` each chunk, then ``finish``; ``close`` (always) removes what was not kept.
    """

    def __init__(self, objects: LfsObjects, record: dict) -> None:
        objects.objects.mkdir(parents=True, exist_ok=True)
        self.objects = objects
        self.record = record
        self.part = objects.objects / f"{uuid.uuid4().hex}.part"
        self.fh = open(self.part, "xb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Raises PayloadTooLarge past the announced size."""
        self.size += len(chunk)
        if self.size > self.record["size"]:
            raise PayloadTooLarge(f"The upload is larger than the {self.record['size']} bytes announced")
        self.digest.update(chunk)
        self.fh.write(chunk)

    def finish(self) -> None:
        """Raises InvalidInput for fewer bytes than announced, or another sha256."""
        self.fh.close()
        if self.size != self.record["size"]:
            raise InvalidInput(f"The upload has {self.size} bytes; {self.record['size']} were announced")
        if self.digest.hexdigest() != self.record["oid"]:
            raise InvalidInput("The upload's sha256 is not the object id announced")
        os.replace(self.part, self.objects.path(self.record["oid"]))

    def close(self) -> None:
        self.fh.close()
        self.part.unlink(missing_ok=True)


@dataclass
class CommitBuilder:
    """Reads a commit's NDJSON lines into ``work`` (a private, empty folder).

    Args:
        work: where inline files are written as they arrive.
        lfs: the uploaded LFS objects.
        limit: the bytes the new files of one commit may add up to.
        trust_pickle: whether this model may hold pickle weights.
    """

    work: Path
    lfs: LfsObjects
    limit: int
    trust_pickle: bool = False
    summary: str = ""
    parent: Optional[str] = None
    files: dict[str, Path] = field(default_factory=dict)
    lfs_files: dict[str, str] = field(default_factory=dict)
    deleted_files: list[str] = field(default_factory=list)
    deleted_folders: list[str] = field(default_factory=list)
    size: int = 0
    _seen_header: bool = False

    def add(self, line: bytes) -> None:
        """One line of the body."""
        if not line.strip():
            return
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"A commit line is not JSON: {exc}") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise InvalidInput('Each commit line is {"key": ..., "value": {...}}')
        key, value = item.get("key"), item["value"]
        if key == "header":
            self._header(value)
            return
        if not self._seen_header:
            raise InvalidInput("A commit starts with its header line")
        if len(self.files) + len(self.lfs_files) + len(self.deleted_files) + len(self.deleted_folders) >= MAX_FILES:
            raise InvalidInput(f"A commit has at most {MAX_FILES} operations")
        path = repo_path(value.get("path"))
        if key in ("file", "lfsFile") and ignored(path):
            return
        if key in ("file", "lfsFile") and (why := refused(path, self.trust_pickle)):
            raise InvalidInput(f"The model is refused: {why}")
        if key == "file":
            self._file(path, value)
        elif key == "lfsFile":
            self._lfs_file(path, value)
        elif key == "deletedFile":
            self.deleted_files.append(path)
        elif key == "deletedFolder":
            self.deleted_folders.append(path)
        else:
            raise InvalidInput(f"Unknown commit operation {key!r}: file, lfsFile, deletedFile or deletedFolder")

    def _header(self, value: dict) -> None:
        if self._seen_header:
            raise InvalidInput("A commit has one header line")
        self._seen_header = True
        summary, parent = value.get("summary", ""), value.get("parentCommit")
        if not isinstance(summary, str) or (parent is not None and not isinstance(parent, str)):
            raise InvalidInput("The commit header's summary and parentCommit are strings")
        self.summary, self.parent = summary[:1000], parent

    def _count(self, size: int) -> None:
        self.size += size
        if self.size > self.limit:
            raise PayloadTooLarge(f"The commit's files are larger than the limit of {self.limit} bytes")

    def _file(self, path: str, value: dict) -> None:
        if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
            raise InvalidInput(f"{path}: a file's content is a base64 string (encoding: base64)")
        try:
            content = base64.b64decode(value["content"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{path}: the content is not valid base64") from None
        self._count(len(content))
        target = self.work / f"{len(self.files)}.file"
        target.write_bytes(content)
        self.files[path] = target
        self.lfs_files.pop(path, None)

    def _lfs_file(self, path: str, value: dict) -> None:
        if value.get("algo", "sha256") != "sha256":
            raise InvalidInput(f"{path}: LFS objects are named by sha256")
        oid = check_oid(value.get("oid"))
        size = value.get("size")
        found = self.lfs.path(oid)
        if not found.is_file() or (isinstance(size, int) and found.stat().st_size != size):
            raise InvalidInput(f"{path}: the LFS object {oid} was not uploaded (use the LFS batch API first)")
        self._count(found.stat().st_size)
        self.lfs_files[path] = oid
        self.files.pop(path, None)

    def check_complete(self) -> None:
        if not self._seen_header:
            raise InvalidInput("The commit is empty: it starts with a header line")


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        if target.is_dir():
            raise InvalidInput(f"{target.name} is a folder of the repo; it cannot become a file")
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def apply_commit(current: Optional[Path], staged: Path, commit: CommitBuilder) -> None:
    """Makes ``staged`` (absent) the repo ``current`` (None: empty) with ``commit`` applied.

    Unchanged files are hard links to the current ones (the same file system), so a commit
    of one small file to a large model copies nothing.

    Raises:
        EntryNotFound: a deleted file or folder that does not exist.
        InvalidInput: a path that is a file in one place and a folder in another.
    """
    staged.mkdir(parents=True)
    if current is not None:
        for root, dirs, files in os.walk(current):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith("."):
                    continue
                source = Path(root, name)
                if source.is_symlink() or not source.is_file():
                    continue
                _link_or_copy(source, staged / source.relative_to(current))
    for path in commit.deleted_files:
        target = staged / path
        if not target.is_file():
            raise EntryNotFound(f"A file with this name doesn't exist: {path}")
        target.unlink()
    for path in commit.deleted_folders:
        target = staged / path.rstrip("/")
        if not target.is_dir():
            raise EntryNotFound(f"A folder with this name doesn't exist: {path}")
        shutil.rmtree(target)
    for path, source in commit.files.items():
        _place(staged, path, source)
    for path, oid in commit.lfs_files.items():
        _place(staged, path, commit.lfs.path(oid))
    count = sum(len(files) for _, _, files in os.walk(staged))
    if count > MAX_FILES:
        raise InvalidInput(f"A model has at most {MAX_FILES} files")


def _place(staged: Path, path: str, source: Path) -> None:
    target = staged / path
    for parent in PurePosixPath(path).parents:
        if str(parent) != "." and (staged / parent).is_file():
            raise InvalidInput(f"{path}: {parent} is a file of the repo, not a folder")
    _link_or_copy(source, target)
