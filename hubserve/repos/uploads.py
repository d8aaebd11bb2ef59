"""Model uploads: an archive (tar, tar.gz/bz2/xz or zip) becomes a model folder, atomically.

The archive is streamed to a temporary file (size-limited), unpacked into a
temporary folder on the store's file system with every entry checked (no absolute
paths, no ``..``, no links, no devices: the zip-slip family), validated (a
``config.json``, safetensors weights unless pickle files are trusted for that
model, nothing that runs code or points outside the folder: ``model_files``) and
only then renamed into place. A failed or interrupted upload leaves
nothing behind, and an existing model is swapped whole under a per-model lock, so
two uploads of the same id at once end with one of them, complete.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import stat
import tarfile
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput, PayloadTooLarge
from .model_files import inspect_folder, refusals
from .repo_paths import member_path
from .folders import config_file

STAGING = ".uploads"
_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def staging_dir(store: Path) -> Path:
    """Where uploads are unpacked: inside the store, so the final rename is atomic."""
    return store / STAGING


def _copy(src, dest: Path, budget: list[int], limit: int) -> None:
    try:
        out = open(dest, "xb")
    except FileExistsError:
        raise InvalidInput(f"The archive holds {dest.name!r} twice") from None
    with out:
        while chunk := src.read(1 << 20):
            budget[0] += len(chunk)
            if budget[0] > limit:
                raise PayloadTooLarge(f"The unpacked model is larger than the limit of {limit} bytes")
            out.write(chunk)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidInput(f"The archive holds {path.name!r} both as a file and as a folder") from None


def _entries(archive: Path) -> Iterator[tuple[str, str, Callable[[], Optional[IO[bytes]]]]]:
    """``(name, kind, open)`` of each entry of a zip or tar archive; kind is file, dir or other."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver set no Unix mode
                kind = "dir" if info.is_dir() else "file" if mode in (0, stat.S_IFREG) else "other"
                yield info.filename, kind, lambda info=info: zf.open(info)
        return
    try:
        tf = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError):
        raise InvalidInput("The upload is not a tar or zip archive") from None
    with tf:
        for member in tf:
            kind = "file" if member.isfile() else "dir" if member.isdir() else "other"
            yield member.name, kind, lambda member=member: tf.extractfile(member)


def unpack(archive: Path, target: Path, limits: LimitsConfig) -> None:
    """Unpacks ``archive`` into the empty folder ``target``, refusing unsafe entries.

    Raises:
        InvalidInput: not a tar or zip archive, an unsafe or unsupported entry, an over-long path
            or more than ``limits.max_repo_files`` entries.
        PayloadTooLarge: the unpacked files exceed ``limits.max_upload_bytes``.
    """
    budget, limit = [0], limits.max_upload_bytes
    for count, (name, kind, open_entry) in enumerate(_entries(archive), start=1):
        if count > limits.max_repo_files:
            raise InvalidInput(f"The archive has more than {limits.max_repo_files} entries (limits.max_repo_files)")
        rel = member_path(name, limits)
        if kind == "other":
            raise InvalidInput(f"Archive entry {name!r} is a link or a special file")
        dest = target.joinpath(*rel.parts)
        if kind == "dir":
            _mkdir(dest)
            continue
        _mkdir(dest.parent)
        src = open_entry()
        if src is None:
            raise InvalidInput(f"Archive entry {name!r} cannot be read")
        with src:
            _copy(src, dest, budget, limit)


def model_root(folder: Path) -> Path:
    """The model folder inside an unpacked archive: itself, or its only subfolder."""
    entries = [p for p in folder.iterdir() if p.name not in ("__MACOSX",)]
    if len(entries) == 1 and entries[0].is_dir() and config_file(folder) is None:
        return entries[0]
    return folder


def check_model_folder(folder: Path, trust_pickle: bool = False, *, limits: LimitsConfig) -> dict:
    """Validates an unpacked model: a JSON ``config.json`` (or a diffusers pipeline's
    ``model_index.json``) and loadable, safe weights.

    Args:
        folder: the unpacked model.
        trust_pickle: the config trusts this model's pickle files.
        limits: the server's ``limits`` (``max_model_json_bytes``).

    Returns:
        The parsed config.

    Raises:
        InvalidInput: naming what is missing or refused.
    """
    config_path = config_file(folder)
    if config_path is None:
        raise InvalidInput("The model has no config.json (or model_index.json) at its top level")
    report = inspect_folder(folder, limits)
    problems = refusals(report, trust_pickle, any_pickle=True)
    if problems:
        raise InvalidInput(f"The model is refused: {'; '.join(problems[:5])}", errors=problems)
    try:
        config = json.loads(config_path.read_bytes())  # its size is bounded by inspect_folder
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{config_path.name} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidInput(f"{config_path.name} must be a JSON object")
    if not report.safetensors and not report.pickles:
        raise InvalidInput("The model has no weights (*.safetensors)")
    return config


@contextmanager
def model_lock(folder: Path, model_id: str) -> Iterator[None]:
    """An exclusive lock on one model id across processes (uploads, commits and deletes): a file
    lock under ``folder`` (the store's staging folder, so that every pod sharing the store's
    volume takes the same lock)."""
    locks = folder / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / (model_id.replace("/", "--") + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two paths in one step (Linux's ``renameat2(RENAME_EXCHANGE)``); False where the system
    or file system cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def install(staged: Path, target: Path) -> None:
    """Puts the folder ``staged`` at ``target``, replacing a previous model whole.

    Both live on one file system; the caller holds the model's lock. A replaced model is swapped
    out in one step, so a reader finds the old folder or the new one, never no folder; where the
    system cannot swap, the old folder is renamed away first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.rename(staged, target)
        return
    old = staged.parent / f"{uuid.uuid4().hex}.old"
    if _exchange(staged, target):
        os.rename(staged, old)
    else:
        os.rename(target, old)
        try:
            os.rename(staged, target)
        except OSError:
            os.rename(old, target)
            raise
    shutil.rmtree(old, ignore_errors=True)


def remove(target: Path, staging: Path) -> None:
    """Deletes a model folder: renamed away first, so readers never see half of it."""
    staging.mkdir(parents=True, exist_ok=True)
    doomed = staging / f"{uuid.uuid4().hex}.deleted"
    os.rename(target, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    try:
        target.parent.rmdir()  # the organisation folder, when it is now empty
    except OSError:
        pass
