"""``TaskModels``: where the gate sends each task's loads and requests."""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from hubserve import ray_adapter
from hubserve.errors import ModelLoadError, NeedsTorch, RouteNotFound
from hubserve.repos.refs import ModelRef

from .load_tracker import ModelKey

logger = logging.getLogger(__name__)


class TaskModels:
    """Where each task's models run: this replica's own model servers (the ingress's
    inline tasks), else the task's deployment behind a Serve ``DeploymentHandle``.

    A model an inline server cannot run without torch (``NeedsTorch``) goes to the
    task's deployment from then on.

    Args:
        handles: task name to the ``DeploymentHandle`` of its model server.
        local: task name to a ``ModelServer`` running in this replica.
    """

    def __init__(self, handles: dict, local: Optional[dict] = None) -> None:
        self.handles = dict(handles)
        self.local = dict(local or {})
        self.elsewhere: set[ModelKey] = set()

    def deployed(self, task: str) -> bool:
        return task in self.handles or task in self.local

    def handle(self, task: str, ref: ModelRef):
        """The model server handle of ``task``, routed to replicas holding ``ref``."""
        if task not in self.handles:
            raise RouteNotFound(f"The task `{task}` is not deployed on this server")
        return self.handles[task].options(multiplexed_model_id=ref.revision_id)

    def _server(self, task: str, ref: ModelRef):
        server = self.local.get(task)
        if server is None or ModelKey.of(task, ref) in self.elsewhere:
            return None
        return server

    def _elsewhere_from_now(self, task: str, ref: ModelRef, exc: NeedsTorch) -> None:
        """``ref`` needs torch: the task's deployment runs it from now on (a load error without one)."""
        if task not in self.handles:
            raise ModelLoadError(str(exc)) from None
        logger.info("%s goes to the %s deployment: %s", ref.model_id, task, exc)
        self.elsewhere.add(ModelKey.of(task, ref))

    async def load_model(self, task: str, ref: ModelRef) -> dict:
        server = self._server(task, ref)
        if server is not None:
            try:
                return await server.load_model(ref.revision_id)
            except NeedsTorch as exc:
                self._elsewhere_from_now(task, ref, exc)
        return await self.handle(task, ref).load_model.remote(ref.revision_id)

    def holders(self, task: str, ref: ModelRef) -> Optional[tuple[int, int]]:
        """(running replicas, replicas holding or loading ``ref``) without asking any replica:
        this replica's own server, or Serve's view of the deployment (None before it has one)."""
        server = self._server(task, ref)
        if server is not None:
            return 1, int(server.holds(ref.revision_id))
        handle = self.handles.get(task)
        if handle is None:
            return None
        return ray_adapter.holders(handle.app_name, handle.deployment_name, ref.revision_id)

    async def model_status(self, task: str, ref: ModelRef) -> dict:
        """What a replica says of ``ref`` (the router asks one holding it, if any)."""
        server = self._server(task, ref)
        if server is not None:
            return await server.model_status(ref.revision_id)
        return await self.handle(task, ref).model_status.remote(ref.revision_id)

    def running_replicas(self) -> dict[str, int]:
        """Running replicas per task deployment, from one question to the Serve controller."""
        from ray import serve

        app = serve.status().applications.get(serve.get_replica_context().app_name)
        counts = {}
        for task in self.handles:
            deployment = app.deployments.get(task) if app else None
            counts[task] = int(deployment.replica_states.get("RUNNING", 0)) if deployment else 0
        return counts

    async def unload(self, ref: ModelRef) -> int:
        """Unloads ``ref``'s model here and from every running replica of every task (none is
        started for it): the router sends each call to a replica holding the model, until none does."""
        done = 0
        for server in self.local.values():
            done += int(await server.unload(ref.model_id))
        for task, running in (await asyncio.to_thread(self.running_replicas)).items():
            for _ in range(running):
                try:
                    if not await self.handle(task, ref).unload.remote(ref.model_id):
                        break
                except Exception as exc:  # noqa: BLE001 - a replica going away holds nothing
                    logger.info("unloading %s from %s: %s", ref.model_id, task, exc)
                    break
                done += 1
        return done

    async def infer(self, task: str, ref: ModelRef, item):
        server = self._server(task, ref)
        if server is not None:
            try:
                return await server.infer(item)
            except NeedsTorch as exc:
                self._elsewhere_from_now(task, ref, exc)
        response = self.handle(task, ref).infer.remote(item)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise

    def stream(self, task: str, ref: ModelRef, item):
        server = self._server(task, ref)
        if server is not None:
            return server.generate_stream(item)
        return self.handle(task, ref).options(stream=True).generate_stream.remote(item)
