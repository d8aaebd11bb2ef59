"""Paths inside a model repo, whatever brings them: an archive entry, a commit or preupload line,
a ``resolve``, ``tree`` or ``paths-info`` request.

Every path is bounded before anything else looks at it (``limits.max_path_bytes`` for the whole
path, ``limits.max_path_part_bytes`` for each name, in UTF-8 bytes, as file systems count them),
so an over-long name is a clear 400 and never an ``ENAMETOOLONG`` from the file system, nor a
large string kept in memory. A path written to the store is also safe: relative, without ``..``,
a NUL byte or a backslash (the zip-slip family).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput

#: How much of a refused path an error message quotes.
_QUOTED = 80


def _quoted(path: str) -> str:
    return repr(path if len(path) <= _QUOTED else path[:_QUOTED] + "...")


def check_path_bounds(path: object, limits: LimitsConfig) -> str:
    """``path`` if it is a string within the path bounds, else InvalidInput naming the bound."""
    if not isinstance(path, str):
        raise InvalidInput("A path in the repo must be a string")
    if len(path) > limits.max_path_bytes:  # NOTE(hubserve): characters never outnumber UTF-8 bytes
        raise InvalidInput(f"The path {_quoted(path)} is longer than {limits.max_path_bytes} bytes "
                           "(limits.max_path_bytes)")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"The path {_quoted(path)} is not valid UTF-8") from None
    if len(encoded) > limits.max_path_bytes:
        raise InvalidInput(f"The path {_quoted(path)} is longer than {limits.max_path_bytes} bytes "
                           "(limits.max_path_bytes)")
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > limits.max_path_part_bytes:
        raise InvalidInput(f"The path {_quoted(path)} has a name of {longest} bytes; the limit is "
                           f"{limits.max_path_part_bytes} (limits.max_path_part_bytes)")
    return path


def member_path(name: object, limits: LimitsConfig) -> PurePosixPath:
    """The safe relative path of a repo file or archive entry, or InvalidInput."""
    name = check_path_bounds(name, limits)
    if not name or "\x00" in name or "\\" in name:
        raise InvalidInput(f"The path {_quoted(name)} has an invalid name")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise InvalidInput(f"The path {_quoted(name)} is absolute")
    if any(part == ".." for part in path.parts):
        raise InvalidInput(f"The path {_quoted(name)} leaves the model folder ('..')")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts:
        raise InvalidInput(f"The path {_quoted(name)} has an invalid name")
    return PurePosixPath(*parts)


def repo_path(path: object, limits: LimitsConfig) -> str:
    """The safe form of a path in a repo (``a/b.json``), or InvalidInput."""
    return member_path(path, limits).as_posix()


def ignored(path: str) -> bool:
    """Hidden files (``.gitattributes``, ``.cache/...``) are not part of a model: never stored."""
    return any(part.startswith(".") for part in PurePosixPath(path).parts)
