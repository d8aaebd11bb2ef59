"""The Hub's HTTP routes, on an ``APIRouter`` of their own that the ingress includes.

``huggingface_hub`` calls them (``HfApi(endpoint=...)``, ``hf_hub_download``, ``create_repo``,
``upload_folder``, ``create_commit``) and the ``hubserve models`` commands: the model list and
info, file downloads, ``paths-info``, repo create/delete/settings, ``preupload``, the Git LFS
batch API and ``commit``. ``HubRoutes`` holds them as methods: ``Ingress`` subclasses it, and
``@serve.ingress`` binds them to the replica as it binds the ingress's own routes. They use the
ingress's ``admin`` (``ModelAdmin``) and ``writes`` (``HubWrites``).
"""

# NOTE(hubserve): no `from __future__ import annotations` here: FastAPI must see the
# real `Request` annotation on the methods that @serve.ingress rewrites.
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..responses import error_response, json_response, request_id_of
from .api import hub_error
from .extras import agent_harnesses, split_xet_route, xet_token

router = APIRouter()


class HubRoutes:
    """The Hub's routes, as methods of the ingress (see the module's docstring)."""

    @router.get("/api/models")
    async def api_list(self, request: Request) -> Response:
        return await self._admin(request, self.admin.list(request))

    @router.get("/api/whoami-v2")
    async def api_whoami(self, request: Request) -> Response:
        return await self._admin(request, self.admin.whoami(request))

    @router.get("/api/agent-harnesses")
    async def api_agent_harnesses(self, request: Request) -> Response:
        return await self._admin(request, agent_harnesses(self.admin, request))

    @router.get("/api/models/{model_id:path}")
    async def api_get(self, request: Request, model_id: str) -> Response:
        if (xet := split_xet_route(model_id)) is not None:
            return await self._admin(request, xet_token(self.admin, request, *xet))
        # NOTE(hubserve): the Hub's /api/models/{id}/revision/{rev} and /tree/{rev}[/{path}]; an id
        # never holds "/revision/" or "/tree/" (two segments at most).
        if "/tree/" in model_id:
            model_id, _, location = model_id.partition("/tree/")
            return await self._admin(request, self.admin.tree(request, model_id, location))
        model_id, _, revision = model_id.partition("/revision/")
        return await self._admin(request, self.admin.get(request, model_id, revision or "main"))

    @router.api_route("/{model_id:path}/resolve/{revision}/{filename:path}", methods=["GET", "HEAD"])
    async def hub_file(self, request: Request, model_id: str, revision: str, filename: str) -> Response:
        return await self._admin(request, self.admin.file(request, model_id, revision, filename))

    @router.post("/api/models/{model_id:path}")
    async def api_upload(self, request: Request, model_id: str) -> Response:
        # NOTE(hubserve): the Hub's /paths-info/{rev}, /preupload/{rev} and /commit/{rev}; an id
        # never holds them (two segments at most).
        for route, work in (("/paths-info/", self.admin.paths_info), ("/preupload/", self.writes.preupload),
                            ("/commit/", self.writes.commit)):
            if route in model_id:
                model_id, _, revision = model_id.partition(route)
                return await self._admin(request, work(request, model_id, revision))
        return await self._admin(request, self.admin.upload(request, model_id), status=201)

    @router.put("/api/models/{model_id:path}/settings")
    async def api_settings(self, request: Request, model_id: str) -> Response:
        return await self._admin(request, self.writes.settings(request, model_id))

    @router.post("/api/repos/create")
    async def api_create_repo(self, request: Request) -> Response:
        return await self._admin(request, self.writes.create(request))

    @router.post("/api/validate-yaml")
    async def api_validate_yaml(self, request: Request) -> Response:
        return await self._admin(request, self.writes.validate_yaml(request))

    @router.delete("/api/repos/delete")
    async def api_delete_repo(self, request: Request) -> Response:
        return await self._admin(request, self.writes.delete(request))

    @router.post("/{model_id:path}.git/info/lfs/objects/batch")
    async def lfs_batch(self, request: Request, model_id: str) -> Response:
        return await self._admin(request, self.writes.lfs_batch(request, model_id))

    @router.put("/api/lfs/objects/{ticket}")
    async def lfs_upload(self, request: Request, ticket: str) -> Response:
        return await self._admin(request, self.writes.lfs_upload(request, ticket))

    @router.patch("/api/models/{model_id:path}")
    async def api_patch(self, request: Request, model_id: str) -> Response:
        return await self._admin(request, self.admin.patch(request, model_id))

    @router.delete("/api/models/{model_id:path}")
    async def api_delete(self, request: Request, model_id: str) -> Response:
        return await self._admin(request, self.admin.delete(request, model_id))

    async def _admin(self, request: Request, work, status: int = 200) -> Response:
        """A management or Hub API answer (a response of its own, or JSON); errors carry the
        Hub's ``X-Error-Code``."""
        try:
            answer = await work
            return answer if isinstance(answer, Response) else json_response(answer, status=status)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            return error_response(hub_error(exc), request_id_of(request))
