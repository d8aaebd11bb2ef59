"""The model management API: upload, list, inspect, change visibility, delete.

``POST /api/models/{org}/{name}?private=true`` takes a tar or zip stream;
``GET /api/models`` and ``GET /api/models/{id}`` list what the caller may see (the latter in
the Hub's model-info form, ``hub_api``, as ``GET /{id}/resolve/{rev}/{path}`` serves files);
``PATCH /api/models/{id}`` with ``{"private": bool}``; ``DELETE /api/models/{id}``.
Writes need a token with the ``write`` role in the model's namespace (or the admin
token). A private model the caller may not see is answered exactly like a missing one:
reads through ``resolve_visible``, and writes are refused (401 without a token, 403 with
one) from the namespace alone, before anything about the model is looked at.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import urllib.parse
import uuid
from pathlib import Path
from typing import Optional

from starlette.requests import Request
from starlette.responses import Response

from deployments.facade import ModelGate
from deployments.tasks import infer_task, task_or_none
from hubserve.config.app import AppConfig
from hubserve.errors import ApiError, Forbidden, InvalidInput, ModelNotFound, PayloadTooLarge, Unauthorized
from hubserve.inputs import flag
from hubserve.repos.folders import scan_folder
from hubserve.repos.refs import ModelRef, validate_model_id
from hubserve.repos.repo_paths import check_path_bounds
from hubserve.repos.store import ModelStore
from hubserve.tokens.principal import Principal, namespace_of
from hubserve.repos.uploads import (
    check_model_folder,
    install,
    model_lock,
    model_root,
    remove,
    staging_dir,
    unpack,
)

from ..json_bodies import json_object
from ..parsing import read_body
from ..security import Guard, resolve_visible
from .api import Digests, check_revision, file_response, matches, model_info, paths_info, summary, tree

logger = logging.getLogger(__name__)


class ModelAdmin:
    """Uploads and manages the models of the store.

    Args:
        config: the application config.
        store: the model store.
        guard: authentication and rate limits.
        gate: the model gate (to unload deleted models from the replicas).
        cache: the response cache (entries of deleted or replaced models are dropped), or None.
    """

    def __init__(self, config: AppConfig, store: ModelStore, guard: Guard, gate: ModelGate, cache=None) -> None:
        self.cache = cache
        self.config = config
        self.store = store
        self.guard = guard
        self.access = guard.access
        self.gate = gate
        self.root = Path(config.model_store)
        self.digests = Digests()
        self.data_dir = Path(config.data_dir)

    # -- who may ---------------------------------------------------------------------

    async def _visible(self, principal: Principal, model_id: str, repo: bool = False) -> ModelRef:
        return await resolve_visible(self.store, self.access, principal, model_id, repo)

    def check_write(self, principal: Principal, model_id: str) -> None:
        """Refuses a write from the caller and the id's namespace alone: whether the model
        exists, or is private, never changes the answer."""
        if principal.can_write(model_id):
            return
        if principal.anonymous:
            raise Unauthorized("A token with the write role is required to change models")
        namespace = namespace_of(model_id)
        raise Forbidden(f"This token cannot change models in the namespace {namespace!r}" if namespace
                        else "Only the admin token can change models without a namespace")

    def _check_store_model(self, model_id: str) -> Path:
        if model_id in self.config.models:
            raise Forbidden(f"{model_id} is pinned in the server config; change it there")
        return self.root / model_id

    def describe(self, ref: ModelRef) -> dict:
        loaded = self.gate.seen_loaded(ref)
        return {"model_id": ref.model_id, "task": task_or_none(ref), "sha": ref.sha, "size_bytes": ref.size_bytes,
                "private": self.access.is_private(ref.model_id), "source": ref.source, "loaded": loaded}

    # -- routes ------------------------------------------------------------------------

    async def list(self, request: Request) -> list[dict]:
        """The models the caller may see, in the Hub's list form and with hubserve's fields;
        ``author``, ``search``, ``pipeline_tag`` (or ``filter``) and ``limit`` as on the Hub."""
        principal = await self.guard.admit(request)
        query = request.query_params
        limit = query.get("limit", "")
        if limit and not limit.isdigit():
            raise InvalidInput("`limit` is a number")
        refs = await asyncio.to_thread(self._readable, principal)
        refs = [ref for ref in refs if matches(ref, query.get("author"), query.get("search"),
                                               query.get("pipeline_tag") or query.get("filter"))]
        refs = refs[:int(limit)] if limit else refs
        return [{**summary(ref, self.access.is_private(ref.model_id)), **self.describe(ref)} for ref in refs]

    def _readable(self, principal: Principal) -> list[ModelRef]:
        """The models the caller may see (one walk of each folder whose cached revision has
        expired; a model deleted meanwhile is left out)."""
        refs = []
        for model_id in self.store.model_ids():
            if self.access.can_read(principal, model_id):
                try:
                    refs.append(self.store.resolve(model_id))
                except ModelNotFound:
                    continue
        return refs

    async def get(self, request: Request, model_id: str, revision: str = "main") -> dict:
        """The Hub's model info (``?blobs=true``: with file sizes and sha256), and hubserve's own fields."""
        principal = await self.guard.admit(request)
        ref = await self._visible(principal, model_id, repo=True)
        check_revision(ref, revision)
        blobs = request.query_params.get("blobs", "").lower() in ("1", "true")
        info = await asyncio.to_thread(model_info, ref, self.access.is_private(ref.model_id),
                                       self.digests if blobs else None)
        return {**info, **self.describe(ref)}

    async def tree(self, request: Request, model_id: str, location: str) -> list[dict]:
        """``/api/models/{id}/tree/{rev}[/{path}]`` (``?recursive=true``)."""
        principal = await self.guard.admit(request)
        revision, _, prefix = location.partition("/")
        check_path_bounds(prefix, self.config.limits)
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        ref = await self._visible(principal, model_id, repo=True)
        return await asyncio.to_thread(tree, ref, revision, prefix, recursive, self.digests)

    async def paths_info(self, request: Request, model_id: str, revision: str) -> list[dict]:
        """``POST /api/models/{id}/paths-info/{rev}`` with the form field ``paths`` (repeated)."""
        principal = await self.guard.admit(request)
        body = await read_body(request, self.config.limits.max_form_bytes, "A paths-info form")
        paths = urllib.parse.parse_qs(body.decode("utf-8", errors="replace")).get("paths", [])
        limits = self.config.limits
        if len(paths) > limits.max_repo_files:
            raise InvalidInput(f"A paths-info request names at most {limits.max_repo_files} paths "
                               "(limits.max_repo_files)")
        for path in paths:
            check_path_bounds(path, limits)
        ref = await self._visible(principal, model_id, repo=True)
        return await asyncio.to_thread(paths_info, ref, revision, paths, self.digests)

    async def file(self, request: Request, model_id: str, revision: str, filename: str) -> Response:
        """``/{id}/resolve/{revision}/{path}``: one file of a model the caller may see."""
        principal = await self.guard.admit(request)
        check_path_bounds(filename, self.config.limits)
        ref = await self._visible(principal, model_id, repo=True)
        return await file_response(ref, revision, filename, self.digests)

    async def whoami(self, request: Request) -> dict:
        """``/api/whoami-v2``: the token's user, organisations and role (401 without a token)."""
        principal = await self.guard.admit(request)
        if principal.anonymous:
            raise Unauthorized("Invalid user token")
        name = "admin" if principal.admin else principal.user
        role = "write" if principal.admin else principal.role
        return {"type": "user", "id": name, "name": name, "fullname": name,
                "orgs": [{"type": "org", "name": org} for org in sorted(principal.orgs)],
                "auth": {"type": "access_token", "accessToken": {"displayName": principal.token_id or name,
                                                                  "role": role}}}

    async def store_repo(self, request: Request, model_id: str, principal: Optional[Principal] = None) -> ModelRef:
        """The repo of the model store that the caller (``principal``, else the request's) may
        change, or an error: the write is refused from the namespace alone, before anything
        about the repo is looked at."""
        principal = principal or await self.guard.admit(request)
        validate_model_id(model_id)
        self.check_write(principal, model_id)
        ref = await self._visible(principal, model_id, repo=True)
        self._check_store_model(model_id)
        if ref.source != "store":
            raise Forbidden(f"{model_id} is not a folder of the model store ({ref.source}); it cannot be changed here")
        return ref

    async def set_private(self, model_id: str, private: bool) -> None:
        await asyncio.to_thread(self.access.store.set_private, model_id, private)
        self.access.forget()
        self._evict_cache(model_id)

    async def remove_repo(self, ref: ModelRef) -> int:
        """Deletes a store repo whole; returns how many replicas unloaded it."""
        def _remove() -> None:
            with model_lock(staging_dir(self.root), ref.model_id):
                remove(self.root / ref.model_id, staging_dir(self.root))
            self.access.store.forget_model(ref.model_id)

        await asyncio.to_thread(_remove)
        self.access.forget()
        unloaded = await self.forget_revision(ref)
        logger.info("deleted %s (unloaded from %d replica(s))", ref.model_id, unloaded)
        return unloaded

    async def patch(self, request: Request, model_id: str) -> dict:
        ref = await self.store_repo(request, model_id)
        body = await json_object(await read_body(request, self.config.limits.max_form_bytes), self.config.limits)
        if not isinstance(body.get("private"), bool) or set(body) != {"private"}:
            raise InvalidInput('The body is {"private": true} or {"private": false}')
        await self.set_private(model_id, body["private"])
        return self.describe(ref)

    async def delete(self, request: Request, model_id: str) -> dict:
        unloaded = await self.remove_repo(await self.store_repo(request, model_id))
        return {"model_id": model_id, "deleted": True, "unloaded_replicas": unloaded}

    async def upload(self, request: Request, model_id: str) -> dict:
        principal = await self.guard.admit(request)
        validate_model_id(model_id)
        self.check_write(principal, model_id)
        private = flag(request.query_params.get("private"), "private")
        target = self._check_store_model(model_id)
        limit = self.config.limits.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"The upload is {int(declared)} bytes; the limit is {limit} bytes")
        work = self.data_dir / "uploads"
        work.mkdir(parents=True, exist_ok=True)
        archive = work / f"{uuid.uuid4().hex}.part"
        staged = staging_dir(self.root) / uuid.uuid4().hex
        try:
            size = 0
            with open(archive, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"The upload is larger than the limit of {limit} bytes")
                    fh.write(chunk)
            if size == 0:
                raise InvalidInput("The upload is empty: send a tar or zip archive of the model folder")
            entry = self.config.models.get(model_id)
            trust_pickle = bool(entry and entry.trust_pickle)
            ref = await asyncio.to_thread(self._stage, archive, staged, model_id, trust_pickle, target, private)
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(staged, ignore_errors=True)
        self.access.forget()
        self._evict_cache(model_id)
        logger.info("uploaded %s (%d bytes, private=%s)", model_id, size, bool(private))
        return self.describe(ref)

    async def forget_revision(self, ref: ModelRef, unload: bool = True) -> int:
        """After ``ref``'s model changed or went away: no cached answers, no stale resolution, and
        (``unload``) no replica holding it. Returns how many replicas unloaded it."""
        self.store.forget(ref.model_id)
        self._evict_cache(ref.model_id)
        return await self.gate.unload(ref) if unload else 0

    def _evict_cache(self, model_id: str) -> None:
        if self.cache is not None:
            self.cache.evict_model(model_id)

    def _stage(self, archive: Path, staged: Path, model_id: str, trust_pickle: bool, target: Path,
               private: Optional[bool]) -> ModelRef:
        staged.mkdir(parents=True)
        unpack(archive, staged, self.config.limits)
        root = model_root(staged)
        check_model_folder(root, trust_pickle, limits=self.config.limits)
        digest, size = scan_folder(root)
        ref = self.store.describe_folder(model_id, root, "store", digest, size)
        try:
            infer_task(ref)
        except ApiError as exc:
            raise InvalidInput(f"The model's task cannot be served: {exc.message}") from None
        with model_lock(staging_dir(self.root), model_id):
            # NOTE(hubserve): a private model is recorded private before it exists, so that no
            # replica ever finds it public; making a model public waits until it is installed.
            was_private = self.access.store.is_private(model_id)
            if private:
                self.access.store.set_private(model_id, True)
            install(root, target)
            if not private and (private is not None or not was_private):
                self.access.store.set_private(model_id, False)
            return self.store.resolve_now(model_id)
