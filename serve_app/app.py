"""The application builders named in ``configs/*.yaml``.

``serve run configs/default.yaml`` imports ``serve_app.app:build_app`` (the main
application, at ``/``) and ``serve_app.app:build_endpoint`` (one per task listed
in ``endpoints``, at ``/pipeline/<task>``) and calls them with the application's
``args``; they are validated as an ``AppConfig`` (and the task names against the
registry) before anything is deployed.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from ray import serve
from ray.serve import Application

from deployments.model_server import build_model_server
from deployments.tasks import task_names
from hubserve.auth import admin_token_hash
from hubserve.config import AppConfig, endpoint_app

from .endpoint import TaskEndpoint
from .ingress import Ingress

logger = logging.getLogger(__name__)

#: The deployment name of a task endpoint inside its application.
ENDPOINT_DEPLOYMENT = "server"


def _config(args: Optional[Mapping[str, Any]]) -> AppConfig:
    config = AppConfig.from_args(args)
    config.check_tasks(set(task_names()))
    admin_token_hash()  # refuses to start with a short admin token
    return config


def build_app(args: Optional[Mapping[str, Any]] = None) -> Application:
    """Builds the main graph: one model server per task behind the ingress.

    Tasks listed in ``endpoints`` have no deployment here: the ingress reaches
    their endpoint application's deployment instead.

    Args:
        args: the hubserve config (see ``hubserve.config.AppConfig``).

    Returns:
        The bound ingress application.
    """
    config = _config(args)
    tasks = [t for t in (config.serve_tasks or task_names()) if t not in config.endpoints]
    handles = {task: build_model_server(task, config) for task in tasks}
    endpoints = {task: (endpoint_app(task)[0], ENDPOINT_DEPLOYMENT) for task in config.endpoints}
    ingress = serve.deployment(
        Ingress,
        name="ingress",
        num_replicas=config.ingress.num_replicas,
        max_ongoing_requests=config.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.ingress.num_cpus},
    )
    logger.info("hubserve: %d task deployments, %d endpoints, model store %s",
                len(handles), len(endpoints), config.model_store)
    return ingress.bind(handles, config.model_dump(mode="json"), endpoints)


def build_endpoint(args: Mapping[str, Any]) -> Application:
    """Builds a task endpoint application (its route prefix: ``/pipeline/<task>``).

    Args:
        args: ``{"task": <task>, "config": <the main application's args>}``.
    """
    if not isinstance(args, Mapping) or set(args) != {"task", "config"}:
        raise ValueError("an endpoint application's args are {task: <task>, config: <hubserve args>}")
    config = _config(args["config"])
    task = args["task"]
    if task not in config.endpoints:
        raise ValueError(f"{task} is not in the config's endpoints {config.endpoints}")
    return build_model_server(task, config, name=ENDPOINT_DEPLOYMENT, cls=TaskEndpoint)
