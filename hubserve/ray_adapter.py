"""Every private Ray API hubserve relies on, in one place, for one Ray release.

- Serve's ``@serve.multiplexed`` keeps each replica's loaded models in an LRU on a wrapper it
  caches on the decorated function (``__serve_multiplex_wrapper``), and reports them to the router
  only when told that they changed. The memory budget and the model admin's deletes need to see
  that LRU, trim it, and tell the router (``resident``, ``unload``).
- A request router learns a request's replica in a private method, and keeps its view of the
  replicas (which holds which model, their queue lengths) in private attributes
  (``AffinityRouterBase`` names them; ``holders`` gives the ingress that view).
- ``serve run`` and the local cluster start a head node without Ray's monitor processes, make the
  cluster's auth token, restart a node in the folder of one that died, and clear a stopped
  cluster's GCS state from Redis (``start_head``, ``new_auth_token``, ``forget_node_address``,
  ``clear_gcs_storage``).

``check_ray_version`` runs where these are first used (a model server, the router, the command
line), so that another Ray release fails there, loudly, instead of misbehaving later.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from typing import Any, Callable, Optional, Set, Tuple

from ray.serve.request_router import LocalityMixin, MultiplexMixin, RequestRouter

from hubserve import RAY_VERSION

_WRAPPER = "__serve_multiplex_wrapper"
#: Serve's namespace (``ray.serve._private.constants.SERVE_NAMESPACE``), checked below.
SERVE_NAMESPACE = "serve"


def check_ray_version(who: str = "hubserve") -> None:
    """Raises RuntimeError unless the installed Ray is the release this adapter is for."""
    import ray

    if ray.__version__ != RAY_VERSION:
        raise RuntimeError(f"{who} needs ray=={RAY_VERSION} (found {ray.__version__}): "
                           "hubserve/ray_adapter.py reaches into that release's private API")
    from ray.serve._private.constants import SERVE_NAMESPACE as namespace

    assert namespace == SERVE_NAMESPACE, namespace


# -- multiplexing ------------------------------------------------------------------------


def _wrapper(load_fn: Callable) -> Any:
    return getattr(load_fn, _WRAPPER, None)


def resident(load_fn: Callable) -> "OrderedDict[str, Any]":
    """The models loaded through ``load_fn`` in this replica, least recently used first."""
    wrapper = _wrapper(load_fn)
    return wrapper.models if wrapper is not None else OrderedDict()


async def unload(load_fn: Callable, model_id: Optional[str] = None,
                 release: Optional[Callable[[Any], None]] = None) -> None:
    """Unloads ``model_id`` (the least recently used model by default), and tells the router.

    Args:
        release: frees one model's memory (Serve's own unload calls the model's ``__del__``).
    """
    wrapper = _wrapper(load_fn)
    if model_id is None:
        await wrapper.unload_model_lru()
    else:
        model = wrapper.models.pop(model_id)
        await asyncio.to_thread(release or (lambda m: m.__del__()), model)
    wrapper._push_multiplexed_replica_info = True


# -- request routing ---------------------------------------------------------------------

#: This process's task deployment routers, by (application, deployment).
_ROUTERS: "weakref.WeakValueDictionary[Tuple[str, str], Any]" = weakref.WeakValueDictionary()


def holders(app: str, deployment: str, model_id: str) -> Optional[Tuple[int, int]]:
    """(running replicas, replicas holding or loading ``model_id``) as the router of this process
    for that deployment knows them from the replicas' reports, or None before it has heard of any."""
    router = _ROUTERS.get((app, deployment))
    if router is None or not router.populated:
        return None
    return len(router.replica_ids()), len(router.holders_of(model_id))


class AffinityRouterBase(LocalityMixin, MultiplexMixin, RequestRouter):
    """Serve's multiplex-aware router, its view of the replicas read through named methods,
    told of each request's replica (``chosen``) and registered for ``holders``."""

    def initialize_state(self, **kwargs) -> None:
        self.populated = False
        _ROUTERS[(self._deployment_id.app_name, self._deployment_id.name)] = self

    def update_replicas(self, replicas) -> None:
        super().update_replicas(replicas)
        self.populated = True

    def holders_of(self, model_id: str) -> Set[Any]:
        """Ids of the replicas that reported ``model_id`` (or are loading it)."""
        return self._multiplexed_model_id_to_replica_ids.get(model_id) or set()

    def replica_ids(self) -> Set[Any]:
        return self._replica_id_set

    def replica(self, replica_id: Any) -> Any:
        return self._replicas.get(replica_id)

    def queue_length(self, replica_id: Any) -> int:
        """The replica's last known requests in flight (0 before it was probed)."""
        return self._replica_queue_len_cache.get(replica_id) or 0

    @property
    def matching_timeout_s(self) -> float:
        return self._multiplexed_matching_timeout

    def chosen(self, request: Any, replica: Any) -> None:
        """Called with each request's replica (subclasses remember it)."""

    async def _choose_replica_for_request(self, pending_request, *, is_retry: bool = False):
        # NOTE(hubserve): Ray 2.60 learns a request's replica here, whether or not the
        # replica may still reject it.
        replica = await super()._choose_replica_for_request(pending_request, is_retry=is_retry)
        self.chosen(pending_request, replica)
        return replica


# -- nodes and clusters ------------------------------------------------------------------


def start_head(dashboard: bool):
    """A local Ray head node, left running when this process exits (no reaper, no fate sharing:
    ``hubserve serve`` stops its processes), with the auth token made if auth is on."""
    check_ray_version("hubserve serve")
    from ray._private.authentication.authentication_token_setup import ensure_token_if_auth_enabled
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    ensure_token_if_auth_enabled(None, create_token_if_missing=True)
    params = RayParams(include_dashboard=dashboard, include_log_monitor=False, no_monitor=True)
    return Node(params, head=True, shutdown_at_exit=False, spawn_reaper=False, ray_init_cluster=True)


def new_auth_token() -> str:
    """A new token for a cluster's token authentication."""
    check_ray_version("hubserve cluster")
    from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

    return generate_new_authentication_token()


def forget_node_address(temp_dir: str) -> None:
    """Drops the address a node's folder recorded, so that a node restarted there does not take
    it for another node's (``ray start --head`` refuses an address a local raylet names)."""
    from ray._common.utils import reset_ray_address

    reset_ray_address(temp_dir)


def clear_gcs_storage(host: str, port: int, password: str, username: Optional[str], namespace: str) -> None:
    """Deletes what a stopped cluster's GCS kept in Redis (its namespace only), as KubeRay's
    clean-up job does when a fault-tolerant cluster is deleted."""
    from ray._private.gcs_utils import cleanup_redis_storage

    cleanup_redis_storage(host, port, password, False, namespace, username=username)
