"""What every task module provides, and the helpers they share.

A task module (``deployments/tasks/<task>.py``) defines a ``Task`` subclass and
registers it with ``@register_task``. The ingress calls ``parse`` (and ``format``);
the replica calls ``run`` with a loaded backend. Task modules never import a
framework: tensors stay behind the backend protocol. How a body is validated into a
request lives in ``_validation`` (its helpers are importable from here too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence

from pydantic import BaseModel, ConfigDict, PrivateAttr

from deployments.backends.base import Head
from hubserve.errors import ApiError, BackendFailure, InvalidInput

from ._heads import BASE
from ._validation import invalid_from_pydantic, type_name, unknown_parameters, unused_kwargs_message, validate

__all__ = [
    "BinaryRequest", "Context", "Measured", "MediaRequest", "Options", "Payload", "Task", "TaskRequest",
    "count_characters", "invalid_from_pydantic", "prompt_data", "type_name", "unknown_parameters",
    "unused_kwargs_message", "validate",
]

logger = logging.getLogger(__name__)


class Options(BaseModel):
    """The legacy ``options`` object. Unknown keys are accepted and logged."""

    model_config = ConfigDict(extra="allow")

    use_cache: Optional[bool] = None
    wait_for_model: Optional[bool] = None
    use_gpu: Optional[bool] = None
    dont_load_model: Optional[bool] = None


@dataclass
class Payload:
    """A request body after decoding, before task validation.

    Attributes:
        inputs: the ``inputs`` value (or the bare string / list body).
        parameters: the ``parameters`` object (``{}`` when absent).
        extra: other top-level keys of a JSON object body.
        raw: whether the body was raw text rather than JSON.
    """

    inputs: Any = None
    parameters: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    raw: bool = False


@dataclass
class Context:
    """What ``format`` may need to know about the caller and the model."""

    user_agent: str = ""
    zero_shot_format: str = "auto"


class TaskRequest(BaseModel):
    """Base of each task's validated request (pickled to the replica)."""

    # NOTE(hubserve): binary inputs serialize as base64 (cache keys are made of the JSON form).
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, ser_json_bytes="base64")

    #: When the caller stops waiting (epoch seconds), set by the ingress; generation stops then.
    _deadline: Optional[float] = PrivateAttr(None)
    #: The config's ``limits`` the request was parsed under (the replica bounds decoding by them).
    _limits: Any = PrivateAttr(None)

    @property
    def limits(self) -> Any:
        return self._limits

    @property
    def deadline(self) -> Optional[float]:
        return self._deadline

    def set_deadline(self, deadline: Optional[float]) -> None:
        self._deadline = deadline

    def characters(self) -> int:
        """Characters of input, for ``x-compute-characters``."""
        return count_characters(getattr(self, "inputs", None))


class BinaryRequest(TaskRequest):
    """Base of the requests of binary-input tasks (``x-compute-characters: -1``, as the hosted API)."""

    def characters(self) -> int:
        return -1


class MediaRequest(TaskRequest):
    """Base of the requests of tasks that answer a file (``Task.media_types``)."""

    #: The answer's media type, negotiated by the ingress from ``Accept`` (never from the body).
    media_type: Optional[str] = None


@dataclass
class Measured:
    """A replica's output with the compute headers only decoding could tell
    (``x-compute-audio-length``)."""

    value: Any
    headers: dict[str, str] = field(default_factory=dict)


def prompt_data(payload: Payload) -> dict:
    """The request data of a task that takes one prompt: the text, or a list of just one."""
    inputs = payload.inputs
    if isinstance(inputs, list) and len(inputs) == 1:
        inputs = inputs[0]
    return {"inputs": inputs, "parameters": payload.parameters}


def count_characters(value: Any) -> int:
    """Sums the lengths of the strings in ``value`` (recursing like the hosted API)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        return sum(count_characters(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(count_characters(v) for v in value)
    return 0


class Task:
    """A task: parsing, running on a backend, and formatting.

    Class attributes:
        name: the task name (as in ``pipeline_tag``).
        pipeline: the transformers pipeline the backend's ``forward`` runs, if any.
        head: the model head the backend loads (``deployments.tasks._heads`` has the text
            heads; a task with a head of its own declares it in its module).
        preprocessors: what the backend loads beside the weights (``tokenizer``,
            ``image_processor``, ``feature_extractor``, ``processor``).
        optional_preprocessors: what it loads when the model folder has it.
        input_kind: what the ingress reads from a body: ``text`` (JSON or raw text, see
            ``serve_app.parsing``) or ``binary`` (the raw body of any content type, or
            base64 in JSON; see ``Task.binary_field``). Decoding happens in the replica.
        native_architectures: ``config.json`` architecture suffixes that make this
            the default task of a model, in order of preference.
        loads_architectures: architecture suffixes this task can run; ``None`` means any.
        infer_priority: lower numbers win when several tasks claim an architecture.
        completions: whether ``/v1/completions`` may run this task.
        media_types: what a task that answers a file (audio, an image) may answer in, the
            default first; its ``run`` returns the file's bytes in ``request.media_type``.
            Empty: the answer is JSON.
        request_model: the pydantic request class.
    """

    name: ClassVar[str]
    head: ClassVar[Head] = BASE
    preprocessors: ClassVar[tuple[str, ...]] = ("tokenizer",)
    optional_preprocessors: ClassVar[tuple[str, ...]] = ()
    input_kind: ClassVar[str] = "text"
    #: The legacy top-level JSON field that may hold a binary input (``image``, ``audio``).
    binary_field: ClassVar[Optional[str]] = None
    pipeline: ClassVar[Optional[str]] = None
    native_architectures: ClassVar[tuple[str, ...]] = ()
    loads_architectures: ClassVar[Optional[tuple[str, ...]]] = ()
    infer_priority: ClassVar[int] = 50
    completions: ClassVar[bool] = False
    media_types: ClassVar[tuple[str, ...]] = ()
    request_model: ClassVar[type[TaskRequest]]

    def claims(self, ref: Any) -> bool:
        """Whether this is a natural default task for the model ``ref`` (a ModelRef)."""
        return any(a.endswith(s) for a in ref.architectures for s in self.native_architectures)

    def head_for(self, ref: Any) -> Head:
        """The head to load for the model ``ref`` (a task whose models differ in heads, such as
        CTC and sequence-to-sequence speech recognition, picks by architecture)."""
        return self.head

    def compute_headers(self, request: TaskRequest) -> dict[str, str]:
        """Headers the ingress can tell from the request (``x-compute-images``); a replica adds
        what decoding measured by returning ``Measured`` outputs."""
        return {}

    def redirect(self, payload: Payload) -> Optional[str]:
        """Another task that should answer this body on the model's own route, if any."""
        return None

    def parse(self, payload: Payload, limits: Any = None) -> TaskRequest:
        """Validates a decoded body into this task's request.

        Args:
            payload: the decoded body.
            limits: the config's ``LimitsConfig`` (the defaults when None).

        Raises:
            InvalidInput: naming each bad field, each bound exceeded, and (in the hosted
                API's words, which the Python client retries on) each unknown parameter.
        """
        data = {k: v for k, v in self.request_data(payload).items() if v is not None}
        request = validate(self.request_model, data, limits)
        request._limits = limits
        unknown = unknown_parameters(getattr(request, "parameters", None))
        if unknown:
            raise InvalidInput(unused_kwargs_message(unknown))
        return request

    def request_data(self, payload: Payload) -> dict:
        """Maps a payload onto the request model's fields (override for extra forms)."""
        params = dict(payload.parameters)
        return {"inputs": payload.inputs, "parameters": params}

    def prepare(self, ref: Any, backend: Any) -> Any:
        """Task state computed once when a model loads (e.g. its pooling config)."""
        return None

    def run(self, model: Any, requests: Sequence[TaskRequest]) -> list[Any]:
        """Runs a batch of requests of one model; returns one output or error each.

        ``model`` is the replica's loaded model: ``model.backend`` (a Backend),
        ``model.state`` (from ``prepare``) and ``model.ref`` (its ModelRef).

        Per-item failures are returned as ``ApiError`` values so that one bad
        request does not fail the rest of its batch.
        """
        out: list[Any] = []
        for request in requests:
            try:
                out.append(self.run_one(model, request))
            except ApiError as exc:
                out.append(exc)
            except Exception:  # noqa: BLE001 - logged once; this request alone fails
                logger.exception("%s failed on one request", self.name)
                out.append(BackendFailure("unknown error"))
        return out

    def run_one(self, model: Any, request: TaskRequest) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def format(self, request: TaskRequest, output: Any, context: Context) -> Any:
        """Turns a replica output into the wire shape (identity by default)."""
        return output

    def cacheable(self, request: TaskRequest) -> bool:
        """Whether the answer is deterministic (and so may be cached)."""
        return True
