"""The ingress's one door into the replica side.

An inference request crosses it three times: ``prepare`` (the model's task, the checks that it
can run it, the body read as that task's request, the caller's control options, the media type,
whether the answer may be cached, the compute headers), then ``ModelGate.answer`` or
``ModelGate.stream`` (the model loaded if it must be, and run, in a task deployment's replica or
in this process), then ``Prepared.finish`` (the output as the wire wants it). The ingress imports
nothing else of ``deployments`` but the task registry (``deployments.tasks``).

Nothing here loads torch or ONNX Runtime: the model servers an ingress runs itself (its inline
embedding tasks) import their framework when the config asks for them (``open_gate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping, Optional

from hubserve.config.app import AppConfig
from hubserve.errors import InvalidInput
from hubserve.media import negotiate
from hubserve.repos.refs import ModelRef

from .backends import runs_without_torch
from .gate import ModelGate
from .load_tracker import BASE_LOAD_S
from .payloads import Control, control_from, task_payload
from .placement import TaskModels
from .tasks import check_can_run, get_task, infer_task
from .tasks._openai import chat_chunks, chat_response, completion_payload, completion_response
from .tasks.base import Context, Payload, TaskRequest
from .work import Answer, WorkItem

__all__ = ["BASE_LOAD_S", "Answer", "Control", "Incoming", "ModelGate", "Prepared", "WorkItem", "build_task_servers",
           "inline_refusals", "open_gate", "prepare", "prepare_chat"]


@dataclass(frozen=True)
class Incoming:
    """A task request as it arrived: its body and what the ingress read of its HTTP envelope.

    Attributes:
        headers: the request headers (a case-insensitive mapping, such as Starlette's).
    """

    body: bytes
    content_type: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Prepared:
    """A validated task request, ready to run, and what the ingress needs to answer it.

    Attributes:
        task: the name of the task that runs it.
        request: the task's validated request (what the cache key hashes).
        control: the caller's wishes about the cache and cold models.
        cacheable: whether the answer is deterministic.
        headers: the compute headers the request alone tells (``x-compute-characters``...).
        media_type: the answer's media type, for a task that answers with a file.
        render: turns stream events into the response's bytes (None: TGI's server-sent events).
    """

    task: str
    request: TaskRequest
    control: Control
    cacheable: bool
    headers: dict
    media_type: Optional[str]
    _finish: Callable[[Any], Any]
    render: Optional[Callable[[AsyncIterator[dict]], AsyncIterator[bytes]]] = None

    @property
    def stream(self) -> bool:
        return bool(getattr(self.request, "stream", False))

    def finish(self, output: Any) -> Any:
        """The response body of the task's output (JSON-able, or bytes of ``media_type``)."""
        return self._finish(output)


def prepare(ref: ModelRef, incoming: Incoming, config: AppConfig, *, pipeline: Optional[str] = None,
            completions: bool = False) -> Prepared:
    """A task request of ``ref`` on ``/models/{id}`` (its own task, or the one its body redirects
    to), on a pipeline route (``pipeline``: that task), or on ``/v1/completions`` (``completions``:
    an OpenAI completions body run as the model's generation task).

    Raises:
        ApiError: the task is unknown or the model cannot run it, the body is bad (400), too
            large or out of bounds.
    """
    task = get_task(pipeline or infer_task(ref))
    check_can_run(task, ref)
    payload = task_payload(incoming.body, config.limits, incoming.content_type, incoming.query, task)
    client_model = None
    if completions:
        payload, client_model = completion_payload(task, payload)
    elif pipeline is None and (other := task.redirect(payload)):
        task = get_task(other)
    request = task.parse(payload, config.limits)
    control = control_from(payload, incoming.headers)
    if task.media_types:
        request.media_type = negotiate(incoming.headers.get("accept"), task.media_types)
    context = Context(user_agent=incoming.headers.get("user-agent", ""), zero_shot_format=config.zero_shot_format)
    if completions:
        def finish(output: Any) -> Any:
            return completion_response(task.format(request, output, context), client_model)
    else:
        def finish(output: Any) -> Any:
            return task.format(request, output, context)
    return Prepared(task.name, request, control, task.cacheable(request), _headers(task, request),
                    getattr(request, "media_type", None), finish)


def prepare_chat(ref: ModelRef, body: dict, headers: Mapping[str, str], config: AppConfig,
                 encode: Callable[[Any], bytes]) -> Prepared:
    """An OpenAI chat completion of ``ref`` (``body``: the parsed JSON body); ``encode`` writes
    the JSON of each stream chunk."""
    task = get_task(infer_task(ref))
    if not hasattr(task, "parse_chat"):
        raise InvalidInput(f"Chat completion serves text-generation models; this model's task is `{task.name}`")
    request = task.parse_chat(body, config.limits)
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return Prepared(task.name, request, control_from(Payload(), headers), task.cacheable(request),
                    _headers(task, request), None,
                    lambda output: chat_response(output, ref.model_id),
                    lambda events: chat_chunks(events, ref.model_id, include_usage, encode))


def _headers(task, request: TaskRequest) -> dict:
    return {"x-compute-characters": str(request.characters()), **task.compute_headers(request)}


async def open_gate(handles: dict, config: AppConfig) -> ModelGate:
    """The ingress's model gate over the task deployments' ``handles`` and the model servers of
    its inline tasks (``ingress.inline``), which it starts here (they share one loaded backend
    per model, and load no framework the config does not ask for)."""
    local = {}
    if config.ingress.inline:
        from .loading import SharedBackends
        from .model_server import ModelServer

        backends = SharedBackends()
        args = config.model_dump(mode="json")
        for task in config.ingress.inline:
            local[task] = ModelServer(task, args, torch=False, backends=backends, threads=config.ingress.threads)
            await local[task].start()
    return ModelGate(TaskModels(handles, local), config)


def inline_refusals(tasks: list[str]) -> list[str]:
    """The tasks of ``tasks`` an ingress cannot run itself (their models need torch)."""
    return [t for t in tasks if not runs_without_torch(get_task(t).head)]


def build_task_servers(tasks: list[str], config: AppConfig) -> dict:
    """The bound Serve deployment of each task's model server, by task name."""
    from .model_server import build_model_server

    return {task: build_model_server(task, config) for task in tasks}
