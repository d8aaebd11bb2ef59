"""The private Ray Serve internals hubserve relies on, in one place, for one Ray release.

Serve's ``@serve.multiplexed`` keeps each replica's loaded models in an LRU on a wrapper it
caches on the decorated function (``__serve_multiplex_wrapper``), and reports them to the
router only when told that they changed. The memory budget and the deletes of the model
admin need to see that LRU, trim it, and tell the router; Serve has no public API for it.
The ingress reads what the replicas reported from its own routers (``holders``).
``check_ray_version`` runs when a model server starts, so that another Ray release fails there,
loudly, instead of misbehaving later (tests/serve/test_lifecycle.py covers the behaviour).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from typing import Any, Callable, Optional, Tuple

from hubserve import RAY_VERSION

_WRAPPER = "__serve_multiplex_wrapper"


def check_ray_version() -> None:
    """Raises RuntimeError unless the installed Ray is the release these internals are for."""
    import ray

    if ray.__version__ != RAY_VERSION:
        raise RuntimeError(f"hubserve's model servers need ray=={RAY_VERSION} (found {ray.__version__}): "
                           "deployments/serve_internals.py reaches into that release's multiplexing")


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


#: This process's task deployment routers (``routing.ModelAffinityRouter``), by (application, deployment).
_ROUTERS: "weakref.WeakValueDictionary[Tuple[str, str], Any]" = weakref.WeakValueDictionary()


def register_router(router: Any) -> None:
    _ROUTERS[(router._deployment_id.app_name, router._deployment_id.name)] = router


def holders(app: str, deployment: str, model_id: str) -> Optional[Tuple[int, int]]:
    """(running replicas, replicas holding or loading ``model_id``) as the router of this process
    for that deployment knows them from the replicas' reports, or None before it has heard of any."""
    router = _ROUTERS.get((app, deployment))
    if router is None or not getattr(router, "_populated", False):
        return None
    return len(router._replicas), len(router._multiplexed_model_id_to_replica_ids.get(model_id, ()))
