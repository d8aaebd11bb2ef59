"""Model ids and the revisions they resolve to (``ModelRef``, ``Revision``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

from hubserve.errors import InvalidInput

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


class Revision(NamedTuple):
    """One revision of a model: what a replica loads and holds. Its text form ``<id>@<sha>``
    is the multiplexed model id Serve routes on (``str(revision)``, ``Revision.parse``)."""

    model_id: str
    sha: str

    def __str__(self) -> str:
        return f"{self.model_id}@{self.sha}"

    @classmethod
    def parse(cls, text: str) -> "Revision":
        model_id, _, sha = text.rpartition("@")
        return cls(model_id, sha)


@dataclass(frozen=True)
class ModelRef:
    """One resolved model revision.

    Attributes:
        model_id: the id clients use.
        path: the folder holding the ``save_pretrained`` files.
        sha: a 40-hex revision id (the snapshot sha for an HF cache folder,
            otherwise a digest of file names, sizes and modification times).
        source: ``config``, ``store``, ``hf-cache`` or ``hub`` (pulled from an upstream Hub).
        architectures: ``config.json`` architectures.
        model_type: ``config.json`` model_type.
        pipeline_tag: the model card's ``pipeline_tag``, if any.
        sentence_transformers: whether the folder is a sentence-transformers model.
        size_bytes: the total size of the weight files.
    """

    model_id: str
    path: Path
    sha: str
    source: str
    architectures: tuple[str, ...] = ()
    model_type: str = ""
    pipeline_tag: Optional[str] = None
    sentence_transformers: bool = False
    size_bytes: int = 0
    config_task: Optional[str] = field(default=None, compare=False)

    @property
    def cache_repo(self) -> Optional[Path]:
        """The HF cache repo folder of a cached snapshot (its files link into the repo's ``blobs/``)."""
        return self.path.parent.parent if self.source in ("hf-cache", "hub") else None

    @property
    def revision(self) -> Revision:
        return Revision(self.model_id, self.sha)

    @property
    def revision_id(self) -> str:
        """``<id>@<sha>``: the multiplexed model id of this revision."""
        return str(self.revision)


def validate_model_id(model_id: str) -> str:
    """Checks that a model id is ``name`` or ``org/name`` and safe as a path.

    Ids are matched whole (``fullmatch``: no trailing newline), and, as on the Hub,
    ``--`` is refused: it is how the HF cache spells ``/`` (``models--org--name``), so
    ``org--name`` would otherwise name the same folder as ``org/name``.

    Raises:
        InvalidInput: for traversal (``..``), ``--``, absolute paths, backslashes, NUL,
            empty segments, or characters the Hub does not allow.
    """
    problem = None
    if not model_id:
        problem = "it is empty"
    elif "\x00" in model_id or "\\" in model_id:
        problem = "it contains a NUL byte or a backslash"
    elif model_id.startswith("/") or model_id.endswith("/"):
        problem = "it starts or ends with '/'"
    elif ".." in model_id or "--" in model_id:
        problem = "it contains '..' or '--'"
    else:
        parts = model_id.split("/")
        if len(parts) > 2:
            problem = "it has more than one '/' (expected 'name' or 'org/name')"
        elif not all(_SEGMENT.fullmatch(p) for p in parts):
            problem = "only letters, digits, '-', '_' and '.' are allowed (max 96 per part)"
    if problem:
        raise InvalidInput(f"Invalid model id {model_id!r}: {problem}")
    return model_id

