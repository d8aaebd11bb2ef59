"""A task endpoint: a task's model server that also answers HTTP itself.

``POST /pipeline/<task>/<model id>`` names the task in the URL, so no routing
decision is left for an ingress: the endpoint application (route prefix
``/pipeline/<task>``) resolves, validates, caches and formats in the replica that
runs the model. That saves a whole ``DeploymentHandle`` hop per request, which
costs as much CPU as a small model's forward pass. The main ingress still reaches
the same deployment through a handle for the task's other routes, so each model
is loaded once.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from deployments.model_server import ModelServer
from hubserve.errors import ApiError, RouteNotFound

from .cache import make_cache
from .inference import EXPOSED_HEADERS, Inference
from .lifecycle import LocalModels, ModelGate
from .responses import error_response, request_id_of
from .security import Guard

CORS_PREFLIGHT = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "POST, OPTIONS",
    "access-control-allow-headers": "*",
    "access-control-max-age": "600",
}


class TaskEndpoint(ModelServer):
    """The model server of one task, reachable at ``/pipeline/<task>/<model id>``.

    Args:
        task: the task name.
        config: the application config (``AppConfig`` as a dict).
    """

    async def __init__(self, task: str, config: dict) -> None:
        await super().__init__(task, config)
        self.gate = ModelGate(LocalModels(self), self.config)
        self.inference = Inference(self.config, self.store, self.gate, make_cache(self.config.cache),
                                   Guard(self.config))

    async def __call__(self, request: Request) -> Response:
        path = request.scope.get("path", "")
        root = request.scope.get("root_path", "")
        prefix = f"/pipeline/{self.task.name}"
        for head in (root, prefix):
            if head and path.startswith(head):
                path = path[len(head):]
        model_id = path.strip("/")
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=CORS_PREFLIGHT)
        if request.method != "POST":
            err = ApiError(f"Method {request.method} is not allowed on {request.url.path}")
            err.status_code = 405
            response = error_response(err, request_id_of(request))
        elif not model_id:
            response = error_response(RouteNotFound(f"No route for POST {request.url.path}"), request_id_of(request))
        else:
            response = await self.inference.serve(request, model_id, self.task.name)
        if "origin" in request.headers:
            response.headers["access-control-allow-origin"] = "*"
            response.headers["access-control-expose-headers"] = EXPOSED_HEADERS
        return response
