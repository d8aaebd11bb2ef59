"""The HTTP ingress: routes, parsing, model resolution, error mapping, headers.

It resolves the model and its task, validates the body with the task's schema,
and calls the task's deployment with ``multiplexed_model_id=<id>@<sha>``. It
never imports torch.
"""

# NOTE(hubserve): no `from __future__ import annotations` here: FastAPI must see the
# real `Request` annotation on the methods that @serve.ingress rewrites.
import asyncio
import logging
import time
from typing import Optional

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from deployments.model_server import Answer, WorkItem
from deployments.tasks import check_can_run, get_task, infer_task, task_names
from deployments.tasks.base import Context, Payload, Task
from hubserve import __version__
from hubserve.config import AppConfig
from hubserve.errors import ApiError, InvalidInput, RouteNotFound, ServiceUnavailable
from hubserve.store import ModelRef, open_store

from .cache import MemoryCache, cache_key, decode_entry, encode_entry, make_cache
from .chat import chat_chunks, chat_response
from .completions import completion_payload, completion_response
from .lifecycle import ModelGate
from .parsing import Control, control_from, decode_body, read_body
from .responses import awaited, dumps, error_response, json_response, request_id_of, sse, unwrap

logger = logging.getLogger(__name__)

EXPOSED_HEADERS = (
    "x-compute-type, x-compute-time, x-compute-characters, x-sha, x-request-id, "
    "estimated_time, retry-after"
)
app = FastAPI(
    title="hubserve",
    version=__version__,
    description="A self-hosted, wire-compatible Hugging Face Inference API.",
)
app.add_middleware(
    CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
    expose_headers=[h.strip() for h in EXPOSED_HEADERS.split(",")],
)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    message = {404: f"No route for {request.method} {request.url.path}",
               405: f"Method {request.method} is not allowed on {request.url.path}"}.get(
        exc.status_code, str(exc.detail))
    err = RouteNotFound(message) if exc.status_code == 404 else ApiError(message)
    err.status_code = exc.status_code
    return error_response(err, request_id_of(request))


@serve.ingress(app)
class Ingress:
    """The ingress deployment.

    Args:
        handles: task name to the ``DeploymentHandle`` of its model server.
        config: the application config as a dict.
    """

    def __init__(self, handles: dict, config: dict) -> None:
        self.config = AppConfig.model_validate(config)
        self.store = open_store(self.config)
        self.gate = ModelGate(handles, self.config)
        self.cache = make_cache(self.config.cache)

    # -- routes -----------------------------------------------------------------

    @app.get("/health")
    async def health(self) -> Response:
        return json_response({"status": "ok"})

    @app.get("/models")
    async def list_models(self) -> Response:
        models = []
        for model_id in await asyncio.to_thread(self.store.model_ids):
            ref = self.store.resolve(model_id)
            try:
                task: Optional[str] = infer_task(ref)
            except ApiError:
                task = None
            models.append({"model_id": model_id, "task": task, "sha": ref.sha, "source": ref.source})
        return json_response(models)

    @app.get("/models/{model_id:path}/info")
    async def info(self, request: Request, model_id: str) -> Response:
        rid = request_id_of(request)
        try:
            ref = await self._resolve(model_id)
            return json_response(self._info(ref))
        except Exception as exc:  # noqa: BLE001
            return error_response(exc, rid)

    @app.get("/status/{model_id:path}")
    async def status(self, request: Request, model_id: str) -> Response:
        try:
            ref = await self._resolve(model_id)
            return json_response(await self.gate.status(infer_task(ref), ref))
        except Exception as exc:  # noqa: BLE001
            return error_response(exc, request_id_of(request))

    @app.post("/models/{model_id:path}/pipeline/{task}")
    async def model_pipeline(self, request: Request, model_id: str, task: str) -> Response:
        return await self._serve(request, model_id, task)

    @app.post("/pipeline/{task}/{model_id:path}")
    async def pipeline(self, request: Request, task: str, model_id: str) -> Response:
        return await self._serve(request, model_id, task)

    @app.post("/models/{model_id:path}/v1/completions")
    async def completions(self, request: Request, model_id: str) -> Response:
        return await self._serve(request, model_id, None, completions=True)

    @app.post("/models/{model_id:path}/v1/chat/completions")
    async def model_chat(self, request: Request, model_id: str) -> Response:
        return await self._chat(request, model_id)

    @app.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Response:
        return await self._chat(request, None)

    @app.post("/models/{model_id:path}")
    async def models(self, request: Request, model_id: str) -> Response:
        return await self._serve(request, model_id, None)

    # -- the request path --------------------------------------------------------

    async def _serve(self, request: Request, model_id: str, task_name: Optional[str],
                     completions: bool = False) -> Response:
        start = time.perf_counter()
        rid = request_id_of(request)
        try:
            ref = await self._resolve(model_id)
            task = get_task(task_name or infer_task(ref))
            check_can_run(task, ref)
            body = await read_body(request, self.config.max_body_bytes)
            payload = decode_body(body, request.headers.get("content-type", ""), request.query_params)
            if completions:
                payload, client_model = completion_payload(task, payload)
            elif task_name is None and (other := task.redirect(payload)):
                task = get_task(other)
            control = control_from(payload, request.headers)
            task_request = task.parse(payload)
            if getattr(task_request, "stream", False):
                await self.gate.ready(task.name, ref, control.wait_for_model, control.load_model)
                return await self._stream(task, ref, task_request, start)
            answer = await self._call(task, ref, task_request, control)
            context = Context(user_agent=request.headers.get("user-agent", ""),
                              zero_shot_format=self.config.zero_shot_format)
            output = task.format(task_request, answer.output, context)
            if completions:
                output = completion_response(output, client_model)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            return error_response(exc, rid)
        return json_response(output, headers=self._headers(answer.compute_type, answer.sha, start, task_request))

    async def _chat(self, request: Request, model_id: Optional[str]) -> Response:
        start = time.perf_counter()
        try:
            body = orjson.loads(await read_body(request, self.config.max_body_bytes))
            if not isinstance(body, dict):
                raise InvalidInput("A chat completion body is a JSON object with `messages`")
            if model_id is None:
                model_id = body.get("model")
                if not isinstance(model_id, str):
                    raise InvalidInput("`model` (a model id) is required on /v1/chat/completions")
            ref = await self._resolve(model_id)
            task = get_task(infer_task(ref))
            if not hasattr(task, "parse_chat"):
                raise InvalidInput(f"Chat completion serves text-generation models; this model's task is `{task.name}`")
            chat_request = task.parse_chat(body)
            control = control_from(Payload(), request.headers)
            if chat_request.stream:
                await self.gate.ready(task.name, ref, control.wait_for_model, control.load_model)
                include_usage = bool(chat_request.stream_options and chat_request.stream_options.include_usage)
                return await self._stream(
                    task, ref, chat_request, start,
                    lambda events: chat_chunks(events, ref.model_id, include_usage, dumps))
            answer = await self._call(task, ref, chat_request, control)
        except orjson.JSONDecodeError as exc:
            return error_response(InvalidInput(f"Malformed JSON body: {exc}"), request_id_of(request))
        except Exception as exc:  # noqa: BLE001
            return error_response(exc, request_id_of(request))
        return json_response(chat_response(answer.output, ref.model_id),
                             headers=self._headers(answer.compute_type, answer.sha, start, chat_request))

    async def _resolve(self, model_id: str) -> ModelRef:
        """The model's revision: from the store's memory when fresh, else from disk in a thread."""
        return self.store.fresh(model_id) or await asyncio.to_thread(self.store.resolve, model_id)

    def _headers(self, compute_type: str, sha: str, start: float, task_request) -> dict:
        return {
            "x-compute-type": compute_type,
            "x-compute-time": f"{time.perf_counter() - start:.3f}",
            "x-compute-characters": str(task_request.characters()),
            "x-sha": sha,
            "access-control-expose-headers": EXPOSED_HEADERS,
        }

    async def _call(self, task: Task, ref: ModelRef, task_request, control: Control) -> Answer:
        """The answer of a task request: from the cache, or from the task's deployment."""
        key = None
        if self.cache is not None and control.use_cache is not False and task.cacheable(task_request):
            key = cache_key(ref.model_id, ref.sha, task.name, task_request)
            hit = await self._cache_io(self.cache.get, key)
            if hit is not None:
                output, _ = decode_entry(hit)
                return Answer(output, "cache", ref.sha)
        await self.gate.ready(task.name, ref, control.wait_for_model, control.load_model)
        response = self.gate.handle(task.name, ref).remote(WorkItem(ref.revision_id, task_request))
        try:
            answer = await asyncio.wait_for(awaited(response), self.config.request_timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise ServiceUnavailable(
                f"Request timed out after {self.config.request_timeout_s:g}s", headers={"Retry-After": "1"}
            ) from None
        if key is not None:
            await self._cache_io(self.cache.set, key, encode_entry(answer.output, answer.compute_type))
        return answer

    async def _cache_io(self, fn, *args):
        # NOTE(hubserve): the memory cache answers inline; Redis is network I/O, off the event loop.
        if isinstance(self.cache, MemoryCache):
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def _stream(self, task: Task, ref: ModelRef, task_request, start: float, render=None) -> Response:
        """Server-sent events (TGI's, or ``render``'s); errors before the first token are plain JSON."""
        events = self.gate.handle(task.name, ref).options(stream=True).generate_stream.remote(
            WorkItem(ref.revision_id, task_request))
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

        headers = self._headers(meta["compute_type"], meta["sha"], start, task_request)
        headers.update({"x-accel-buffering": "no", "cache-control": "no-cache"})
        body = render(tokens()) if render else tgi()
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    def _info(self, ref: ModelRef) -> dict:
        try:
            task: Optional[str] = infer_task(ref)
        except ApiError:
            task = None
        return {
            "model_id": ref.model_id,
            "model_sha": ref.sha,
            "model_pipeline_tag": task,
            "model_dtype": "float32",
            "framework": "transformers",
            "size_bytes": ref.size_bytes,
            "version": __version__,
            "tasks": task_names(),
        }
