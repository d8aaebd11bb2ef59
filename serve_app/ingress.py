"""The HTTP ingress: every route of the API.

Inference goes through ``Inference`` (resolve, validate, cache, call the task's
deployment with ``multiplexed_model_id=<id>@<sha>``, format). It never imports torch.
"""

# NOTE(hubserve): no `from __future__ import annotations` here: FastAPI must see the
# real `Request` annotation on the methods that @serve.ingress rewrites.
import logging

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from deployments.facade import open_gate
from deployments.tasks import infer_task, task_names, task_or_none
from hubserve import __version__
from hubserve.config.app import AppConfig
from hubserve.errors import ApiError, ModelNotFound, RouteNotFound
from hubserve.repos.refs import ModelRef
from hubserve.repos.store import open_store
from hubserve.tokens.secret_env import load_secrets

from .cache import make_cache
from .inference import EXPOSED_HEADERS, ChatRoute, Inference, TaskRoute
from .hub.management import ModelAdmin
from .hub.routes import HubRoutes, router as hub_router
from .hub.writes import HubWrites
from .responses import error_response, json_response, request_id_of
from .security import Guard
from .upstream import Upstream
from .whole_paths import WholePaths

#: The routes whose requests need no state of their own.
MODEL, COMPLETIONS, CHAT = TaskRoute(), TaskRoute(completions=True), ChatRoute()

logger = logging.getLogger(__name__)

app = FastAPI(
    title="hubserve",
    version=__version__,
    description="A self-hosted, wire-compatible Hugging Face Inference API.",
)
app.add_middleware(WholePaths)
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
class Ingress(HubRoutes):
    """The ingress deployment.

    Args:
        handles: task name to the ``DeploymentHandle`` of its model server.
        args: the application's args (see ``hubserve.config.app.AppConfig``).
    """

    async def __init__(self, handles: dict, args: dict) -> None:
        # NOTE(hubserve): the secrets (the admin token's hash, the token-store and Redis URLs, the
        # upstream token) reach this replica alone, from the folder the args name.
        load_secrets(args.get("secrets_dir"))
        self.config = AppConfig.from_args(args)
        self.store = open_store(self.config)
        self.gate = await open_gate(handles, self.config)
        self.guard = Guard(self.config)
        cache = make_cache(self.config.cache)
        self.admin = ModelAdmin(self.config, self.store, self.guard, self.gate, cache)
        self.writes = HubWrites(self.admin)
        self.upstream = Upstream(self.config, self.store, self.guard.access, self.admin.forget_revision)
        self.inference = Inference(self.config, self.store, self.gate, cache, self.guard, self.upstream)

    # -- routes -----------------------------------------------------------------

    @app.get("/health")
    async def health(self) -> Response:
        return json_response({"status": "ok"})

    @app.get("/models")
    async def list_models(self, request: Request) -> Response:
        return await self._admin(request, self.admin.list(request))

    @app.get("/models/{model_id:path}/info")
    async def info(self, request: Request, model_id: str) -> Response:
        rid = request_id_of(request)
        try:
            ref = await self.inference.resolve(model_id, await self.guard.admit(request))
            return json_response(self._info(ref))
        except Exception as exc:  # noqa: BLE001
            return error_response(exc, rid)

    @app.get("/status/{model_id:path}")
    async def status(self, request: Request, model_id: str) -> Response:
        try:
            principal = await self.guard.admit(request)
            try:
                ref = await self.inference.resolve(model_id, principal)
            except ModelNotFound:
                downloading = self.upstream.status(model_id, principal)
                if downloading is not None:
                    return json_response(downloading)
                # NOTE(hubserve): a pull that finished since the first look is in the store now.
                ref = await self.inference.resolve(model_id, principal)
            return json_response(await self.gate.status(infer_task(ref), ref))
        except Exception as exc:  # noqa: BLE001
            return error_response(exc, request_id_of(request))

    # -- the Hub's routes (serve_app/hub/routes.py) ---------------------------------------

    # NOTE(hubserve): included here, in the class body, so that they come after the routes above
    # and before inference's: Starlette tries routes in order (`/models/{id}/info` before
    # `/{id}/resolve/...`, `/{id}.git/info/lfs/objects/batch` before `POST /models/{id}`).
    app.include_router(hub_router)

    # -- inference ---------------------------------------------------------------------

    @app.post("/models/{model_id:path}/pipeline/{task}")
    async def model_pipeline(self, request: Request, model_id: str, task: str) -> Response:
        return await self.inference.handle(request, TaskRoute(task), model_id)

    @app.post("/pipeline/{task}/{model_id:path}")
    async def pipeline(self, request: Request, task: str, model_id: str) -> Response:
        return await self.inference.handle(request, TaskRoute(task), model_id)

    @app.post("/models/{model_id:path}/v1/completions")
    async def completions(self, request: Request, model_id: str) -> Response:
        return await self.inference.handle(request, COMPLETIONS, model_id)

    @app.post("/models/{model_id:path}/v1/chat/completions")
    async def model_chat(self, request: Request, model_id: str) -> Response:
        return await self.inference.handle(request, CHAT, model_id)

    @app.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Response:
        return await self.inference.handle(request, CHAT, None)

    @app.post("/models/{model_id:path}")
    async def models(self, request: Request, model_id: str) -> Response:
        return await self.inference.handle(request, MODEL, model_id)

    def _info(self, ref: ModelRef) -> dict:
        return {
            "model_id": ref.model_id,
            "model_sha": ref.sha,
            "model_pipeline_tag": task_or_none(ref),
            "model_dtype": "float32",
            "framework": "transformers",
            "size_bytes": ref.size_bytes,
            "version": __version__,
            "tasks": task_names(),
        }
