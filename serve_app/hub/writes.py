"""The write side of the Hub's HTTP API, as ``huggingface_hub`` calls it: ``create_repo``,
``delete_repo``, ``update_repo_settings``, and commits (``upload_file``, ``upload_folder``,
``create_commit``): ``preupload``, the Git LFS batch API with basic transfers, ``commit``.

Every write needs a token with the write role in the repo's namespace, checked from the
namespace alone before anything about the repo is looked at (``ModelAdmin.check_write``).
A commit is validated and installed as an archive upload is (``hubserve.repos.commits``), under
the same per-model lock: the repo's folder changes whole, or not at all.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

from starlette.requests import Request
from starlette.responses import Response

from deployments.tasks import infer_task
from hubserve.tokens.principal import Principal
from hubserve.repos.commits import (
    MAX_LINE_BYTES,
    CommitBuilder,
    Lines,
    apply_commit,
    git_blob_sha1,
    refused,
    upload_mode,
)
from hubserve.config.limits import LimitsConfig
from hubserve.errors import ApiError, Conflict, InvalidInput, PreconditionFailed, RevisionNotFound, Unauthorized
from hubserve.repos.folders import scan_folder
from hubserve.repos.lfs import LfsObjects, check_oid
from hubserve.repos.refs import ModelRef, validate_model_id
from hubserve.repos.repo_paths import ignored, repo_path
from hubserve.repos.uploads import check_model_folder, install, model_lock, staging_dir

from ..json_bodies import json_object
from ..parsing import read_body
from ..responses import json_response
from .management import ModelAdmin
from .repo_bodies import card_problem, create_body, delete_body, settings_body

logger = logging.getLogger(__name__)

LFS_JSON = "application/vnd.git-lfs+json"


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _json_body(request: Request, limits: LimitsConfig) -> dict:
    return await json_object(await read_body(request, limits.max_form_bytes), limits)


class HubWrites:
    """The Hub's write routes over the model admin's store, tokens and locks."""

    def __init__(self, admin: ModelAdmin) -> None:
        self.admin = admin
        self.store = admin.store
        self.access = admin.access
        self.limits = admin.config.limits
        self.lfs = LfsObjects(admin.root, self.limits)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _repo_id(principal: Principal, name: str, organization: Optional[str]) -> str:
        """``organization/name`` of a create or delete body (the caller's own namespace by default)."""
        if principal.anonymous:
            raise Unauthorized("A token with the write role is required to change models")
        namespace = organization or principal.user
        return validate_model_id(f"{namespace}/{name}")

    @staticmethod
    def _check_branch(revision: str) -> None:
        if revision != "main":
            raise RevisionNotFound(f"Invalid rev id: {revision} (this server's repos have one branch, main)")

    # -- repos ---------------------------------------------------------------------------

    async def create(self, request: Request) -> dict:
        """``POST /api/repos/create``: an empty repo (``visibility``, or ``private``); 409 when it exists."""
        principal = await self.admin.guard.admit(request)
        name, organization, private = create_body(await _json_body(request, self.limits))
        model_id = self._repo_id(principal, name, organization)
        self.admin.check_write(principal, model_id)
        url = f"{base_url(request)}/{model_id}"

        def make() -> bool:
            target = self.admin.root / model_id
            with model_lock(staging_dir(self.admin.root), model_id):
                if model_id in self.admin.config.models or self._exists(model_id):
                    return False
                self.access.store.set_private(model_id, private)
                target.mkdir(parents=True)
            return True

        if not await asyncio.to_thread(make):
            raise Conflict("You already created this model repo", extra={"url": url})
        self.access.forget()
        self.store.forget(model_id)
        logger.info("created the repo %s (private=%s)", model_id, private)
        return {"url": url, "name": model_id, "id": model_id}

    def _exists(self, model_id: str) -> bool:
        try:
            self.store.resolve_repo(model_id)
        except ApiError:
            return (self.admin.root / model_id).exists()
        return True

    async def delete(self, request: Request) -> dict:
        """``DELETE /api/repos/delete``: the repo and its files."""
        principal = await self.admin.guard.admit(request)
        model_id = self._repo_id(principal, *delete_body(await _json_body(request, self.limits)))
        await self.admin.remove_repo(await self.admin.store_repo(request, model_id, principal))
        return {}

    async def settings(self, request: Request, model_id: str) -> dict:
        """``PUT /api/models/{id}/settings``: the repo's visibility (``repo_bodies.settings_body``)."""
        await self.admin.store_repo(request, model_id)
        private = settings_body(await _json_body(request, self.limits))
        if private is not None:
            await self.admin.set_private(model_id, private)
        return {"private": self.access.is_private(model_id) if private is None else private}

    async def validate_yaml(self, request: Request) -> dict:
        """``POST /api/validate-yaml``: the model card's front matter parses (the client asks before
        committing a README.md)."""
        await self.admin.guard.admit(request)
        content = (await _json_body(request, self.limits)).get("content")
        if not isinstance(content, str):
            raise InvalidInput("`content` is the README.md text")
        problem = card_problem(content)
        if problem:
            raise InvalidInput(f"Invalid metadata in README.md: {problem}", extra={"errors": [{"message": problem}]})
        return {"errors": [], "warnings": []}

    # -- commits ---------------------------------------------------------------------------

    async def preupload(self, request: Request, model_id: str, revision: str) -> dict:
        """``POST /api/models/{id}/preupload/{rev}``: each file's upload mode (regular or lfs),
        whether it is ignored, and the id of the file the repo holds under that path."""
        ref = await self.admin.store_repo(request, model_id)
        self._check_branch(revision)
        body = await _json_body(request, self.limits)
        files = body.get("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise InvalidInput('The body is {"files": [{"path": ..., "sample": ..., "size": ...}]}')
        if len(files) > self.limits.max_repo_files:
            raise InvalidInput(f"A preupload names at most {self.limits.max_repo_files} files (limits.max_repo_files)")
        trust = self._trusts_pickle(model_id)
        out = []
        for item in files:
            path, size = repo_path(item.get("path"), self.limits), item.get("size")
            if not isinstance(size, int) or size < 0:
                raise InvalidInput(f"{path}: `size` is a number of bytes")
            if not ignored(path) and (why := refused(path, trust)):
                raise InvalidInput(f"The model is refused: {why}")
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=True)
            except (ValueError, TypeError):
                raise InvalidInput(f"{path}: `sample` is base64") from None
            mode = upload_mode(sample, size)
            entry = {"path": path, "uploadMode": mode, "shouldIgnore": ignored(path)}
            existing = ref.path / path
            if existing.is_file() and Path(os.path.realpath(existing)).is_relative_to(os.path.realpath(ref.path)):
                entry["oid"] = await asyncio.to_thread(
                    self.admin.digests.of if mode == "lfs" else git_blob_sha1, existing)
            out.append(entry)
        return {"files": out, "commitOid": ref.sha}

    def _trusts_pickle(self, model_id: str) -> bool:
        entry = self.admin.config.models.get(model_id)
        return bool(entry and entry.trust_pickle)

    async def lfs_batch(self, request: Request, model_id: str) -> Response:
        """``POST /{id}.git/info/lfs/objects/batch``: where to PUT each object not held yet, within
        the token's quota of objects in flight (413 past it, the whole batch refused)."""
        principal = await self.admin.guard.admit(request)
        await self.admin.store_repo(request, model_id, principal)
        body = await _json_body(request, self.limits)
        if body.get("operation") != "upload":
            raise InvalidInput("Only LFS uploads are served here; files download from /{id}/resolve/{rev}/{path}")
        objects, most = body.get("objects"), self.limits.max_repo_files
        if not isinstance(objects, list) or len(objects) > most:
            raise InvalidInput(f"`objects` is a list of at most {most} {{oid, size}} (limits.max_repo_files)")
        limit = self.limits.max_upload_bytes
        answers, wanted = [], []
        for item in objects:
            oid, size = check_oid(item.get("oid") if isinstance(item, dict) else None), item.get("size")
            if not isinstance(size, int) or size < 0:
                raise InvalidInput(f"{oid}: `size` is a number of bytes")
            answers.append({"oid": oid, "size": size})
            if size > limit:
                answers[-1]["error"] = {"code": 422, "message": f"The object is {size} bytes; the limit is {limit} "
                                                                "bytes (limits.max_upload_bytes)"}
            else:
                wanted.append((oid, size))

        def issue() -> dict[str, str]:
            self.lfs.sweep()
            return self.lfs.issue(principal.key, model_id, wanted)

        tickets = await asyncio.to_thread(issue)
        base = base_url(request)
        for answer in answers:
            if (ticket := tickets.get(answer["oid"])) and "error" not in answer:
                upload = {"href": f"{base}/api/lfs/objects/{ticket}", "expires_in": int(self.limits.lfs_ticket_ttl_s)}
                answer.update(authenticated=True, actions={"upload": upload})
        payload = {"transfer": "basic", "objects": answers, "hash_algo": "sha256"}
        return json_response(payload, headers={"content-type": LFS_JSON})

    async def lfs_upload(self, request: Request, ticket: str) -> dict:
        """``PUT /api/lfs/objects/{ticket}``: one object's bytes (the ticket is the authorization)."""
        record = await asyncio.to_thread(self.lfs.take, ticket)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) != record["size"]:
            raise InvalidInput(f"The upload has {int(declared)} bytes; {record['size']} were announced")
        receiver = await asyncio.to_thread(self.lfs.receiver, record)
        try:
            async for chunk in request.stream():
                receiver.write(chunk)
            await asyncio.to_thread(receiver.finish)
        finally:
            receiver.close()
        return {"oid": record["oid"], "size": record["size"]}

    async def commit(self, request: Request, model_id: str, revision: str) -> dict:
        """``POST /api/models/{id}/commit/{rev}``: the NDJSON commit, applied whole."""
        ref = await self.admin.store_repo(request, model_id)
        self._check_branch(revision)
        if request.query_params.get("create_pr"):
            raise InvalidInput("Pull requests are not served here: commit to main")
        work = staging_dir(self.admin.root) / f"{uuid.uuid4().hex}.commit"
        await asyncio.to_thread(work.mkdir, parents=True)
        try:
            builder = CommitBuilder(work, self.lfs, self.limits, self._trusts_pickle(model_id))
            lines = Lines(MAX_LINE_BYTES)
            async for chunk in request.stream():
                for line in lines.feed(chunk):
                    await asyncio.to_thread(builder.add, line)
            await asyncio.to_thread(builder.add, lines.rest())
            builder.check_complete()
            new = await asyncio.to_thread(self._apply, model_id, builder)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        await self.admin.forget_revision(ref, unload=False)
        logger.info("committed %s@%s: %s", model_id, new.sha[:12], builder.summary[:80])
        # NOTE(hubserve): a reference relative to the endpoint: huggingface_hub 0.x parses the repo out
        # of commitUrl against huggingface.co or $HF_ENDPOINT only, so an absolute URL of this server
        # breaks `HfApi(endpoint=...)` callers, and huggingface.co's would break $HF_ENDPOINT ones.
        return {"commitUrl": f"{model_id}/commit/{new.sha}", "commitOid": new.sha,
                "success": True, "pullRequestUrl": None}

    def _apply(self, model_id: str, builder: CommitBuilder) -> ModelRef:
        target = self.admin.root / model_id
        staged = staging_dir(self.admin.root) / uuid.uuid4().hex
        try:
            with model_lock(staging_dir(self.admin.root), model_id):
                self.store.forget(model_id)
                current = self.store.resolve_repo(model_id)
                if builder.parent is not None and builder.parent != current.sha:
                    raise PreconditionFailed(f"A commit has happened since {builder.parent}: "
                                             f"{model_id} is at {current.sha}")
                apply_commit(current.path, staged, builder)
                self._validate(model_id, staged)
                install(staged, target)
                ref = self.store.resolve_now(model_id)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        self.lfs.drop(builder.lfs_oids)
        return ref

    def _validate(self, model_id: str, folder) -> None:
        check_model_folder(folder, self._trusts_pickle(model_id), limits=self.admin.config.limits)
        digest, size = scan_folder(folder)
        try:
            infer_task(self.store.describe_folder(model_id, folder, "store", digest, size))
        except ApiError as exc:
            raise InvalidInput(f"The model's task cannot be served: {exc.message}") from None

