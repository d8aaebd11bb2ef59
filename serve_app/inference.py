"""The inference request path of the ingress.

Resolve the model, pick its task, read and validate the body, answer from the
cache or from the model server (this very replica for an inline task, else the
task's deployment behind a ``DeploymentHandle``), format the output, set the headers.
Every failure becomes a JSON error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional

import orjson
from fastapi.responses import Response, StreamingResponse
from starlette.requests import Request

from deployments.model_server import Answer, WorkItem
from deployments.tasks import check_can_run, get_task, infer_task
from deployments.tasks.base import Context, Payload, Task
from hubserve.tokens.principal import Principal
from hubserve.config.app import AppConfig
from hubserve.errors import ApiError, InvalidInput, ModelNotFound, ServiceUnavailable
from hubserve.media import negotiate
from hubserve.repos.refs import ModelRef
from hubserve.repos.store import ModelStore

from .cache import MemoryCache, cache_key, decode_entry, encode_entry
from .chat import chat_chunks, chat_response
from .completions import completion_payload, completion_response
from .lifecycle import ModelGate
from .json_bodies import checked_json, off_loop, wait_option
from .parsing import Control, control_from, flag, read_body, task_payload
from .responses import dumps, error_response, json_response, request_id_of, sse, unwrap
from .security import Guard, resolve_visible
from .upstream import Upstream

logger = logging.getLogger(__name__)

EXPOSED_HEADERS = (
    "x-compute-type, x-compute-time, x-compute-characters, x-compute-images, x-compute-audio-length, "
    "x-sha, x-request-id, estimated_time, retry-after"
)


@dataclass
class Plan:
    """What a route made of a request: the model, its task and the task's validated request;
    ``finish`` turns the task's output into the response body, ``render`` turns stream events
    into the response's bytes (None: TGI's server-sent events)."""

    ref: ModelRef
    task: Task
    task_request: Any
    control: Control
    finish: Callable[[Any], Any]
    render: Optional[Callable[[AsyncIterator[dict]], AsyncIterator[bytes]]] = None

    @property
    def stream(self) -> bool:
        return bool(getattr(self.task_request, "stream", False))


class TaskRoute:
    """A task request on ``/models/{id}`` (``task_name`` None: the model's own task) or on a
    pipeline route (``task_name`` given)."""

    def __init__(self, task_name: Optional[str] = None) -> None:
        self.task_name = task_name

    async def plan(self, inference: "Inference", request: Request, model_id: str, principal: Principal) -> Plan:
        ref = await inference.resolve(model_id, principal, request)
        task = get_task(self.task_name or infer_task(ref))
        check_can_run(task, ref)
        payload = await off_loop(task_payload, await inference.body(request), inference.config.limits,
                                 request.headers.get("content-type", ""), request.query_params, task)
        task, payload, finish = self.adapt(task, payload)
        task_request = task.parse(payload, inference.config.limits)
        if task.media_types:
            task_request.media_type = negotiate(request.headers.get("accept"), task.media_types)
        context = Context(user_agent=request.headers.get("user-agent", ""),
                          zero_shot_format=inference.config.zero_shot_format)
        return Plan(ref, task, task_request, control_from(payload, request.headers),
                    lambda output: finish(task.format(task_request, output, context)))

    def adapt(self, task: Task, payload: Payload) -> tuple[Task, Payload, Callable[[Any], Any]]:
        """The task and payload to run, and what turns the formatted output into the body."""
        if self.task_name is None and (other := task.redirect(payload)):
            task = get_task(other)
        return task, payload, _same


class CompletionsRoute(TaskRoute):
    """``/models/{id}/v1/completions``: an OpenAI completions body run as the model's
    generation task, answered as a ``text_completion``."""

    def adapt(self, task: Task, payload: Payload) -> tuple[Task, Payload, Callable[[Any], Any]]:
        payload, client_model = completion_payload(task, payload)
        return task, payload, lambda output: completion_response(output, client_model)


class ChatRoute:
    """An OpenAI chat completion (on ``/v1/chat/completions`` the model is the body's ``model``)."""

    async def plan(self, inference: "Inference", request: Request, model_id: Optional[str],
                   principal: Principal) -> Plan:
        body = await off_loop(checked_json, await inference.body(request), inference.config.limits, "body")
        if not isinstance(body, dict):
            raise InvalidInput("A chat completion body is a JSON object with `messages`")
        if model_id is None:
            model_id = body.get("model")
            if not isinstance(model_id, str):
                raise InvalidInput("`model` (a model id) is required on /v1/chat/completions")
        ref = await inference.resolve(model_id, principal, request)
        task = get_task(infer_task(ref))
        if not hasattr(task, "parse_chat"):
            raise InvalidInput(f"Chat completion serves text-generation models; this model's task is `{task.name}`")
        chat_request = task.parse_chat(body, inference.config.limits)
        include_usage = bool(chat_request.stream_options and chat_request.stream_options.include_usage)
        return Plan(ref, task, chat_request, control_from(Payload(), request.headers),
                    lambda output: chat_response(output, ref.model_id),
                    lambda events: chat_chunks(events, ref.model_id, include_usage, dumps))


def _same(output: Any) -> Any:
    return output


class Inference:
    """Answers inference requests: every route runs the same stages (admit the caller, the
    route's plan: model, task and validated request; then the cache or the model server, the
    body, the headers), and every failure becomes a JSON error.

    Args:
        config: the application config.
        store: the model store.
        gate: the model gate (load state, cold starts) over the model servers.
        cache: the response cache, or None.
        guard: authentication and rate limits.
        upstream: pulls of models the store does not hold, or None.
    """

    def __init__(self, config: AppConfig, store: ModelStore, gate: ModelGate, cache, guard: Guard,
                 upstream: Optional[Upstream] = None) -> None:
        self.upstream = upstream
        self.config = config
        self.store = store
        self.gate = gate
        self.models = gate.models
        self.cache = cache
        self.guard = guard
        self.access = guard.access

    async def resolve(self, model_id: str, principal: Principal, request: Optional[Request] = None) -> ModelRef:
        """The model's revision, if ``principal`` may see it (``resolve_visible``). With
        ``request`` (an inference request), an id the store does not hold is pulled from the
        upstream Hub, waited for as the request's ``wait_for_model`` says."""
        try:
            ref = await resolve_visible(self.store, self.access, principal, model_id)
        except ModelNotFound:
            if request is None or self.upstream is None or not self.upstream.enabled:
                raise
            shadowed = await asyncio.to_thread(self._held, model_id)
            await self.upstream.obtain(model_id, principal, request.state.caller, await self._waits(request),
                                       shadowed)
            return await resolve_visible(self.store, self.access, principal, model_id)
        if ref.source == "hub" and self.upstream is not None:
            self.upstream.refresh(ref)
        return ref

    def _held(self, model_id: str) -> bool:
        try:
            self.store.resolve(model_id)
        except ModelNotFound:
            return False
        return True

    async def _waits(self, request: Request) -> bool:
        """Whether an inference request waits for its model: ``x-wait-for-model``, else the JSON
        body's ``options.wait_for_model``, else the configured default."""
        if request.headers.get("x-wait-for-model") is not None:
            return bool(flag(request.headers["x-wait-for-model"], "x-wait-for-model"))
        if "json" in request.headers.get("content-type", "application/json"):
            wait = await off_loop(wait_option, await self.body(request), self.config.limits)
            if wait is not None:
                return wait
        return self.config.cold_start.wait_by_default

    async def body(self, request: Request) -> bytes:
        """The request body (read once, kept for the stages after the first)."""
        cached = getattr(request.state, "body", None)
        if cached is None:
            cached = request.state.body = await read_body(request, self.config.max_body_bytes)
        return cached

    def scope(self, principal: Principal, ref: ModelRef) -> str:
        """Who may read cache entries of ``ref``: everyone, or this caller for a private model."""
        return principal.key if self.access.is_private(ref.model_id) else ""

    async def handle(self, request: Request, route, model_id: Optional[str]) -> Response:
        """The answer of ``route`` (a ``TaskRoute``, ``CompletionsRoute`` or ``ChatRoute``)."""
        start = time.perf_counter()
        try:
            principal = await self.guard.admit(request)
            plan = await route.plan(self, request, model_id, principal)
            if plan.stream:
                await self.gate.ready(plan.task.name, plan.ref, plan.control.wait_for_model, plan.control.load_model)
                return await self.stream(plan, start)
            answer = await self.call(plan.task, plan.ref, plan.task_request, plan.control,
                                     self.scope(principal, plan.ref))
            output = plan.finish(answer.output)
        except orjson.JSONDecodeError as exc:
            return error_response(InvalidInput(f"Malformed JSON body: {exc}"), request_id_of(request))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            return error_response(exc, request_id_of(request))
        headers = self.headers(answer.compute_type, answer.sha, start, plan.task_request)
        headers.update(plan.task.compute_headers(plan.task_request), **answer.headers)
        if isinstance(output, bytes):
            return Response(output, media_type=plan.task_request.media_type, headers=headers)
        return json_response(output, headers=headers)

    @staticmethod
    def headers(compute_type: str, sha: str, start: float, task_request) -> dict:
        return {
            "x-compute-type": compute_type,
            "x-compute-time": f"{time.perf_counter() - start:.3f}",
            "x-compute-characters": str(task_request.characters()),
            "x-sha": sha,
            "access-control-expose-headers": EXPOSED_HEADERS,
        }

    async def call(self, task: Task, ref: ModelRef, task_request, control: Control, scope: str = "") -> Answer:
        """The answer of a task request: from the cache (entries of ``scope``), or from the
        task's model server."""
        key = None
        if self.cache is not None and control.use_cache is not False and task.cacheable(task_request):
            key = cache_key(ref.model_id, ref.sha, task.name, task_request, scope)
            hit = await self._cache_io(self.cache.get, key)
            if hit is not None:
                output, _, headers = decode_entry(hit)
                return Answer(output, "cache", ref.sha, headers)
        await self.gate.ready(task.name, ref, control.wait_for_model, control.load_model)
        task_request.set_deadline(time.time() + self.config.request_timeout_s)
        try:
            answer = await asyncio.wait_for(self.models.infer(task.name, ref, WorkItem(ref.revision_id, task_request)),
                                            self.config.request_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceUnavailable(
                f"Request timed out after {self.config.request_timeout_s:g}s", headers={"Retry-After": "1"}
            ) from None
        if key is not None:
            await self._cache_io(self.cache.set, key, encode_entry(answer.output, answer.compute_type, answer.headers))
        return answer

    async def _cache_io(self, fn, *args):
        # NOTE(hubserve): the memory cache answers inline; Redis is network I/O, off the event loop.
        if isinstance(self.cache, MemoryCache):
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def stream(self, plan: Plan, start: float) -> Response:
        """Server-sent events (TGI's, or the plan's); errors before the first token are plain JSON."""
        ref, task_request = plan.ref, plan.task_request
        task_request.set_deadline(time.time() + self.config.request_timeout_s)
        events = self.models.stream(plan.task.name, ref, WorkItem(ref.revision_id, task_request))
        meta = await events.__anext__()
        first = await events.__anext__()

        async def tokens():
            yield first
            try:
                async for event in events:
                    yield event
            except Exception as exc:  # noqa: BLE001 - a mid-stream error is an error event
                err = unwrap(exc)
                if not isinstance(err, ApiError):
                    logger.error("stream failed", exc_info=err)
                    err = ApiError("unknown error")
                yield {"error": err.message, "error_type": err.error_type}

        async def tgi():
            async for event in tokens():
                yield sse(event)

        headers = self.headers(meta["compute_type"], meta["sha"], start, task_request)
        headers.update({"x-accel-buffering": "no", "cache-control": "no-cache"})
        body = plan.render(tokens()) if plan.render else tgi()
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)
