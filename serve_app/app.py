"""The application builder named in ``configs/*.yaml``.

``serve run configs/default.yaml`` imports ``serve_app.app:build_app`` and calls it
with the application's ``args``; they are validated as an ``AppConfig`` (and the
task names against the registry) before anything is deployed.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from ray import serve
from ray.serve import Application

from deployments.facade import build_task_servers, inline_refusals
from deployments.tasks import task_names
from hubserve.tokens.access import admin_token_hash
from hubserve.config.app import AppConfig
from hubserve.tokens.secret_env import replica_config

from .ingress import Ingress

logger = logging.getLogger(__name__)


def _config(args: Optional[Mapping[str, Any]]) -> AppConfig:
    config = AppConfig.from_args(args)
    config.check_tasks(set(task_names()))
    heavy = inline_refusals(config.ingress.inline)
    if heavy:
        raise ValueError(f"ingress.inline runs embedding tasks only (no torch in the ingress), not {heavy}")
    admin_token_hash()  # refuses to start with a short admin token
    return config


def build_app(args: Optional[Mapping[str, Any]] = None) -> Application:
    """Builds the graph: one model server per task behind the ingress (which also runs
    the models of ``ingress.inline`` tasks itself).

    Args:
        args: the hubserve config (see ``hubserve.config.app.AppConfig``).

    Returns:
        The bound ingress application.
    """
    config = _config(args)
    tasks = config.serve_tasks or task_names()
    handles = build_task_servers(tasks, replica_config(config))
    scaling = config.ingress.autoscaling
    replicas = ({"num_replicas": config.ingress.num_replicas} if scaling is None
                else {"autoscaling_config": scaling.serve_config()})
    if config.ingress.max_replicas_per_node is not None:
        replicas["max_replicas_per_node"] = config.ingress.max_replicas_per_node
    ingress = serve.deployment(
        Ingress,
        name="ingress",
        max_ongoing_requests=config.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.ingress.num_cpus},
        **replicas,
    )
    logger.info("hubserve: %d task deployments (inline in the ingress: %s), model store %s",
                len(handles), ", ".join(config.ingress.inline) or "none", config.model_store)
    # NOTE(hubserve): the ingress derives its config from the args itself, with the secrets only
    # it reads: what is bound here is kept in Ray's control store.
    return ingress.bind(handles, dict(args or {}))
