"""What travels between the ingress and a task's model server: one request in, one answer out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tasks.base import Measured, TaskRequest


@dataclass
class WorkItem:
    """One request for the model server.

    Attributes:
        revision_id: ``<model id>@<sha>`` (also the multiplexed model id).
        request: the validated task request.
    """

    revision_id: str
    request: TaskRequest


@dataclass
class Answer:
    """A model server's answer: the output, what computed it, and the compute headers the
    replica measured (``Measured``)."""

    output: Any
    compute_type: str
    sha: str
    headers: dict = field(default_factory=dict)

    @classmethod
    def of(cls, output: Any, compute_type: str, sha: str) -> "Answer":
        if isinstance(output, Measured):
            return cls(output.value, compute_type, sha, output.headers)
        return cls(output, compute_type, sha)
