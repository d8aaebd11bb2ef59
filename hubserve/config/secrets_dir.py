"""A secrets folder: one file per environment variable, mode 0600, the layout of a Kubernetes
Secret mounted as a volume (``secrets_dir`` in the config; see ``hubserve.tokens.secret_env``
for who gets one)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Mapping, Optional

_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# NOTE(hubserve): a bound of the operator's own files, never of a request: not a ``limits`` field.
MAX_SECRET_BYTES = 64 * 1024


def write_secrets_dir(values: Mapping[str, str], parent: Optional[Path] = None) -> Path:
    """A new private folder (0700) holding one file (0600) per variable."""
    folder = Path(tempfile.mkdtemp(prefix="hs-secrets-", dir=parent))
    folder.chmod(0o700)
    for name, value in values.items():
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value)
    return folder


def read_secrets_dir(folder: str | os.PathLike) -> dict:
    """The variables of a secrets folder: each regular file named like a variable, its text
    stripped (a Kubernetes Secret volume's ``..data`` links and dot files are skipped)."""
    if not Path(folder).is_dir():
        raise ValueError(f"secrets_dir {folder} is not a folder")
    found = {}
    for entry in sorted(Path(folder).iterdir()):
        if not _NAME.match(entry.name) or not entry.is_file():
            continue
        if entry.stat().st_size > MAX_SECRET_BYTES:
            raise ValueError(f"{entry} is larger than {MAX_SECRET_BYTES} bytes")
        found[entry.name] = entry.read_text(encoding="utf-8").strip()
    return found
