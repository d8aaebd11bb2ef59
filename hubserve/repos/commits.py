"""Commits to a model repo, as ``huggingface_hub``'s ``create_commit`` sends them.

A commit is an NDJSON body: a ``header`` (summary, ``parentCommit``), then ``file`` entries
(small files, base64 inline), ``lfsFile`` entries (large or binary files, uploaded before
through the Git LFS batch API into ``LfsObjects``, named by sha256 and size), and
``deletedFile``/``deletedFolder`` entries. ``Lines`` splits the streamed body into bounded
lines; ``CommitBuilder`` reads them into a private folder as they arrive (each path checked as
an archive entry is, every size bounded); ``apply_commit`` makes the new model folder from the
current one by applying the operations in their order, which the caller validates and installs
whole (``uploads.install``), so a repo changes whole or not at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

import orjson

from hubserve.config.limits import LimitsConfig
from hubserve.errors import EntryNotFound, InvalidInput, PayloadTooLarge

from .lfs import LfsObjects, check_oid
from .model_files import CODE_FOLDERS, CODE_SUFFIXES, PICKLE_SUFFIXES
from .repo_paths import ignored, repo_path

#: The Hub's size from which a file is an LFS object: preupload answers ``lfs`` (as for a file with
#: a NUL byte in its first bytes), and listings and downloads give its LFS facts. A constant of the
#: Hub's protocol that clients rely on, not a setting.
LFS_THRESHOLD = 10 * 1024**2
#: The longest NDJSON line of a commit (a regular file, base64, plus its JSON): derived, since a
#: regular file is below ``LFS_THRESHOLD``.
MAX_LINE_BYTES = LFS_THRESHOLD * 4 // 3 + 64 * 1024


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
    return "lfs" if size >= LFS_THRESHOLD or b"\x00" in sample else "regular"


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file (what the client compares a regular file against)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Lines:
    """Splits a body that arrives in chunks into lines, refusing a line past ``limit`` bytes
    before it is held whole (413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines that ``chunk`` completes."""
        lines, start = [], 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._hold(chunk[start:end])
            lines.append(bytes(self.pending))
            self.pending.clear()
            start = end + 1
        self._hold(chunk[start:])
        return lines

    def rest(self) -> bytes:
        """The last line (with no newline after it)."""
        return bytes(self.pending)

    def _hold(self, part: bytes) -> None:
        if len(self.pending) + len(part) > self.limit:
            raise PayloadTooLarge(f"A commit line is longer than {self.limit} bytes: send large files "
                                  "through LFS (the preupload answer says which)")
        self.pending += part


@dataclass(frozen=True)
class Operation:
    """One operation of a commit: ``kind`` is file, lfsFile, deletedFile or deletedFolder;
    ``source`` the bytes of a file (a staged file or an LFS object) and ``oid`` an LFS object's id."""

    kind: str
    path: str
    source: Optional[Path] = None
    oid: Optional[str] = None


@dataclass
class CommitBuilder:
    """Reads a commit's NDJSON lines into ``work`` (a private, empty folder).

    Args:
        work: where inline files are written as they arrive, one file per line.
        lfs: the uploaded LFS objects.
        limits: the bytes the files of one commit may add up to (``max_upload_bytes``), its
            operations (``max_repo_files``) and the bounds of each path.
        trust_pickle: whether this model may hold pickle weights.
    """

    work: Path
    lfs: LfsObjects
    limits: LimitsConfig
    trust_pickle: bool = False
    summary: str = ""
    parent: Optional[str] = None
    operations: list[Operation] = field(default_factory=list)
    size: int = 0
    _seen_header: bool = False

    @property
    def lfs_oids(self) -> set[str]:
        """The LFS objects the commit takes."""
        return {op.oid for op in self.operations if op.oid is not None}

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
        if len(self.operations) >= self.limits.max_repo_files:
            raise InvalidInput(f"A commit has at most {self.limits.max_repo_files} operations (limits.max_repo_files)")
        path = repo_path(value.get("path"), self.limits)
        if key in ("file", "lfsFile") and ignored(path):
            return
        if key in ("file", "lfsFile") and (why := refused(path, self.trust_pickle)):
            raise InvalidInput(f"The model is refused: {why}")
        if key == "file":
            self.operations.append(Operation(key, path, source=self._file(path, value)))
        elif key == "lfsFile":
            oid = self._lfs_file(path, value)
            self.operations.append(Operation(key, path, source=self.lfs.path(oid), oid=oid))
        elif key in ("deletedFile", "deletedFolder"):
            self.operations.append(Operation(key, path))
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
        if self.size > self.limits.max_upload_bytes:
            raise PayloadTooLarge(f"The commit's files are larger than the limit of {self.limits.max_upload_bytes} "
                                  "bytes (limits.max_upload_bytes)")

    def _file(self, path: str, value: dict) -> Path:
        """The staged copy of an inline file: a new file for each line, whatever its path."""
        if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
            raise InvalidInput(f"{path}: a file's content is a base64 string (encoding: base64)")
        try:
            content = base64.b64decode(value["content"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{path}: the content is not valid base64") from None
        self._count(len(content))
        target = self.work / f"{uuid.uuid4().hex}.file"
        target.write_bytes(content)
        return target

    def _lfs_file(self, path: str, value: dict) -> str:
        if value.get("algo", "sha256") != "sha256":
            raise InvalidInput(f"{path}: LFS objects are named by sha256")
        oid = check_oid(value.get("oid"))
        size = value.get("size")
        found = self.lfs.path(oid)
        if not found.is_file() or (isinstance(size, int) and found.stat().st_size != size):
            raise InvalidInput(f"{path}: the LFS object {oid} was not uploaded (use the LFS batch API first)")
        self._count(found.stat().st_size)
        return oid

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
    """Makes ``staged`` (absent) the repo ``current`` (None: empty) with the commit's operations
    applied one after the other, in the order they came: a later operation on a path wins, and a
    file added earlier in the commit may be deleted by a later operation.

    Unchanged files are hard links to the current ones (the same file system), so a commit
    of one small file to a large model copies nothing.

    Raises:
        EntryNotFound: a deleted file or folder that does not exist at that point.
        InvalidInput: a path that is a file in one place and a folder in another, or a model of
            more than ``limits.max_repo_files`` files.
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
    for op in commit.operations:
        target = staged / op.path
        if op.kind == "deletedFile":
            if not target.is_file():
                raise EntryNotFound(f"A file with this name doesn't exist: {op.path}")
            target.unlink()
            _prune(staged, target.parent)
        elif op.kind == "deletedFolder":
            if not target.is_dir():
                raise EntryNotFound(f"A folder with this name doesn't exist: {op.path}")
            shutil.rmtree(target)
        else:
            _place(staged, op.path, op.source)
    count = sum(len(files) for _, _, files in os.walk(staged))
    limit = commit.limits.max_repo_files
    if count > limit:
        raise InvalidInput(f"A model has at most {limit} files (limits.max_repo_files)")


def _prune(staged: Path, folder: Path) -> None:
    """Removes ``folder`` and its parents inside ``staged`` while they are empty: as in git, a
    folder exists only while it holds a file."""
    while folder != staged and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _place(staged: Path, path: str, source: Path) -> None:
    target = staged / path
    for parent in PurePosixPath(path).parents:
        if str(parent) != "." and (staged / parent).is_file():
            raise InvalidInput(f"{path}: {parent} is a file of the repo, not a folder")
    _link_or_copy(source, target)
