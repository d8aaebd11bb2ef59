"""``build_app``: the application builder named in ``configs/*.yaml``.

``serve run configs/default.yaml`` imports ``serve_app.app:build_app`` and calls it
with the application's ``args``; they are validated as an ``AppConfig`` (and the
task names against the registry) before anything is deployed.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from ray import serve
from ray.serve import Application

from deployments.model_server import build_model_server
from deployments.tasks import task_names
from hubserve.config import AppConfig

from .ingress import Ingress

logger = logging.getLogger(__name__)


def build_app(args: Optional[Mapping[str, Any]] = None) -> Application:
    """Builds the deployment graph: one model server per task behind the ingress.

    Args:
        args: the hubserve config (see ``hubserve.config.AppConfig``).

    Returns:
        The bound ingress application.
    """
    config = AppConfig.from_args(args)
    config.check_tasks(set(task_names()))
    handles = {task: build_model_server(task, config) for task in (config.serve_tasks or task_names())}
    ingress = serve.deployment(
        Ingress,
        name="ingress",
        num_replicas=config.ingress.num_replicas,
        max_ongoing_requests=config.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.ingress.num_cpus},
    )
    logger.info("hubserve: %d task deployments, model store %s", len(handles), config.model_store)
    return ingress.bind(handles, config.model_dump(mode="json"))
