"""The inference request path of the ingress.

Admit the caller and resolve the model (here), then cross to the replica side three times
(``deployments.facade``): prepare the task request, answer it (or from the cache, here), format
the output; set the headers. Every failure becomes a JSON error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

import orjson
from fastapi.responses import Response, StreamingResponse
from starlette.requests import Request

from deployments.facade import Answer, Incoming, ModelGate, Prepared, prepare, prepare_chat
from hubserve.tokens.principal import Principal
from hubserve.config.app import AppConfig
from hubserve.errors import ApiError, InvalidInput, ModelNotFound
from hubserve.inputs import flag
from hubserve.repos.refs import ModelRef
from hubserve.repos.store import ModelStore

from .cache import MemoryCache, cache_key, decode_entry, encode_entry
from .json_bodies import checked_json, off_loop, wait_option
from .parsing import read_body
from .responses import dumps, error_response, json_response, request_id_of, sse, unwrap
from .security import Guard, resolve_visible
from .upstream import Upstream

logger = logging.getLogger(__name__)

EXPOSED_HEADERS = (
    "x-compute-type, x-compute-time, x-compute-characters, x-compute-images, x-compute-audio-length, "
    "x-sha, x-request-id, estimated_time, retry-after"
)


class TaskRoute:
    """A task request on ``/models/{id}`` (``pipeline`` None: the model's own task), on a pipeline
    route (``pipeline``: that task), or on ``/models/{id}/v1/completions`` (``completions``)."""

    def __init__(self, pipeline: Optional[str] = None, completions: bool = False) -> None:
        self.pipeline = pipeline
        self.completions = completions

    async def plan(self, inference: "Inference", request: Request, model_id: str,
                   principal: Principal) -> tuple[ModelRef, Prepared]:
        ref = await inference.resolve(model_id, principal, request)
        incoming = Incoming(await inference.body(request), request.headers.get("content-type", ""),
                            request.query_params, request.headers)
        prepared = await off_loop(_prepare, incoming.body, inference.config.limits, ref, incoming, inference.config,
                                  self.pipeline, self.completions)
        return ref, prepared


def _prepare(body: bytes, limits, ref: ModelRef, incoming: Incoming, config: AppConfig, pipeline: Optional[str],
             completions: bool) -> Prepared:
    """``prepare`` in the shape ``off_loop`` calls (``incoming`` and ``config`` hold the body and limits)."""
    return prepare(ref, incoming, config, pipeline=pipeline, completions=completions)


class ChatRoute:
    """An OpenAI chat completion (on ``/v1/chat/completions`` the model is the body's ``model``)."""

    async def plan(self, inference: "Inference", request: Request, model_id: Optional[str],
                   principal: Principal) -> tuple[ModelRef, Prepared]:
        body = await off_loop(checked_json, await inference.body(request), inference.config.limits, "body")
        if not isinstance(body, dict):
            raise InvalidInput("A chat completion body is a JSON object with `messages`")
        if model_id is None:
            model_id = body.get("model")
            if not isinstance(model_id, str):
                raise InvalidInput("`model` (a model id) is required on /v1/chat/completions")
        ref = await inference.resolve(model_id, principal, request)
        return ref, prepare_chat(ref, body, request.headers, inference.config, dumps)


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
        """The answer of ``route`` (a ``TaskRoute`` or ``ChatRoute``)."""
        start = time.perf_counter()
        try:
            principal = await self.guard.admit(request)
            ref, prepared = await route.plan(self, request, model_id, principal)
            if prepared.stream:
                return await self.stream(ref, prepared, start)
            answer = await self.answer(ref, prepared, self.scope(principal, ref))
            output = prepared.finish(answer.output)
        except orjson.JSONDecodeError as exc:
            return error_response(InvalidInput(f"Malformed JSON body: {exc}"), request_id_of(request))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            return error_response(exc, request_id_of(request))
        headers = self.headers(answer.compute_type, answer.sha, start)
        headers.update(prepared.headers, **answer.headers)
        if isinstance(output, bytes):
            return Response(output, media_type=prepared.media_type, headers=headers)
        return json_response(output, headers=headers)

    @staticmethod
    def headers(compute_type: str, sha: str, start: float) -> dict:
        return {
            "x-compute-type": compute_type,
            "x-compute-time": f"{time.perf_counter() - start:.3f}",
            "x-sha": sha,
            "access-control-expose-headers": EXPOSED_HEADERS,
        }

    async def answer(self, ref: ModelRef, prepared: Prepared, scope: str = "") -> Answer:
        """The answer of a prepared request: from the cache (entries of ``scope``), or from the
        model gate (the task's model server)."""
        control, key = prepared.control, None
        if self.cache is not None and control.use_cache is not False and prepared.cacheable:
            key = cache_key(ref.model_id, ref.sha, prepared.task, prepared.request, scope)
            hit = await self._cache_io(self.cache.get, key)
            if hit is not None:
                output, _, headers = decode_entry(hit)
                return Answer(output, "cache", ref.sha, headers)
        answer = await self.gate.answer(prepared.task, ref, prepared.request, control.wait_for_model,
                                        control.load_model)
        if key is not None:
            await self._cache_io(self.cache.set, key, encode_entry(answer.output, answer.compute_type, answer.headers))
        return answer

    async def _cache_io(self, fn, *args):
        # NOTE(hubserve): the memory cache answers inline; Redis is network I/O, off the event loop.
        if isinstance(self.cache, MemoryCache):
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def stream(self, ref: ModelRef, prepared: Prepared, start: float) -> Response:
        """Server-sent events (TGI's, or the prepared request's); errors before the first token are plain JSON."""
        control = prepared.control
        events = await self.gate.stream(prepared.task, ref, prepared.request, control.wait_for_model,
                                        control.load_model)
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

        headers = self.headers(meta["compute_type"], meta["sha"], start)
        headers.update({"x-compute-characters": prepared.headers["x-compute-characters"],
                        "x-accel-buffering": "no", "cache-control": "no-cache"})
        body = prepared.render(tokens()) if prepared.render else tgi()
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)
