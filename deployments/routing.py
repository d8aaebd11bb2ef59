"""The request router of the task deployments: a model's requests go to the replica that holds it.

Serve's router learns which replica holds which model from the replicas' reports, which reach it
through the controller a moment after a load. Until then it sends a model's requests to the
replicas holding the fewest models. The ingress asks for a load and then sends the request, so a
cold model was loaded twice, once on each replica. In a run of 20 tiny models on two replicas,
that made 41 loads instead of 20, and the copies pushed other models out of the memory budget.
Serve's FIFO mixin also hands a replica probed for one model's request to whichever request
waits first.

This router:
- sends a model whose holder the router does not know yet to the replica its last request went
  to (for ``STICKY_S``);
- matches each probed replica to the request it was probed for;
- spreads a hot model: where every replica holding it has more requests in flight than the
  deployment's ``target_ongoing_requests`` (``spread_above``), one replica below that (the same
  one until it reports the model) joins the candidates, and the less busy one takes the request
  (and loads the model). Under Serve's router a holder took every request of its model until it
  was full (``max_ongoing_requests``), so the replica the autoscaler added for a hot model stood
  idle;
- keeps Serve's choice of candidates otherwise: the replicas that hold the model (for
  ``RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S``), then those holding the fewest models,
  then any.

It is also the ingress's view of what the replicas hold (``hubserve.ray_adapter.holders``). Serve keeps
it from the replicas' own reports, so a model evicted (LRU, memory budget), or lost with its
replica (a restart, a scale-down), leaves it without any replica being asked.

Serve's router internals it builds on (the holders map, queue lengths, the request's replica)
are read through ``hubserve.ray_adapter.AffinityRouterBase``, which checks the Ray release.
"""

from __future__ import annotations

import random
import time
from typing import Dict, List, Optional, Set, Tuple

from ray.serve.request_router import PendingRequest, ReplicaID, RunningReplica

from hubserve.ray_adapter import AffinityRouterBase, check_ray_version

check_ray_version("deployments.routing")

#: What the deployments name in ``request_router_config``.
ROUTER_CLASS = "deployments.routing.ModelAffinityRouter"
#: How long a model's last replica stands in for the holders the controller has not reported yet.
STICKY_S = 10.0


class ModelAffinityRouter(AffinityRouterBase):
    def initialize_state(self, spread_above: Optional[float] = None, **kwargs) -> None:
        super().initialize_state(**kwargs)
        self._last: Dict[str, Tuple[ReplicaID, float]] = {}
        self._spread_above = spread_above

    def _sticky(self, request: PendingRequest) -> Optional[RunningReplica]:
        """The replica this model's last request went to, while the router has no holder for it."""
        model_id = request.metadata.multiplexed_model_id
        if self.holders_of(model_id):
            self._last.pop(model_id, None)
            return None
        last = self._last.get(model_id)
        if last is None or time.monotonic() - last[1] > STICKY_S:
            return None
        # the first try only: where that replica is full, Serve's choice takes over
        if time.time() - request.created_at > self.matching_timeout_s:
            return None
        return self.replica(last[0])

    def _spread(self, model_id: str, ids: Set[ReplicaID]) -> Set[ReplicaID]:
        """``ids``, with one replica below ``spread_above`` where every holder of the model is above it."""
        holders = self.holders_of(model_id)
        if self._spread_above is None or not holders or ids != holders:
            return ids
        if any(self.queue_length(replica_id) <= self._spread_above for replica_id in holders):
            return ids
        others = [replica_id for replica_id in self.replica_ids() - holders
                  if self.queue_length(replica_id) < self._spread_above]
        if not others:
            return ids
        # NOTE(hubserve): one replica at a time, the same one until it reports the model (the
        # fewest models, then its id): choosing among all would load a copy on every replica.
        # An idle replica has no cached queue length (nothing was sent to it); Serve probes it
        # before it counts as the less busy one.
        spare = min(others, key=lambda r: (len(self.replica(r).multiplexed_model_ids), r.unique_id))
        return ids | {spare}

    async def choose_replicas(self, candidate_replicas: List[RunningReplica],
                              pending_request: Optional[PendingRequest] = None) -> List[List[RunningReplica]]:
        """Up to two replicas to probe, of the candidates for this request's model."""
        if pending_request is not None and pending_request.metadata.multiplexed_model_id:
            sticky = self._sticky(pending_request)
            if sticky is not None:
                return [[sticky]]
            ids = self._spread(pending_request.metadata.multiplexed_model_id,
                               self.apply_multiplex_routing(pending_request=pending_request))
        else:
            ids = self.apply_locality_routing(pending_request=pending_request)
        if not ids:
            return []
        chosen = random.sample(tuple(ids), min(2, len(ids)))
        return [[self.replica(replica_id) for replica_id in chosen]]

    def chosen(self, request: PendingRequest, replica: RunningReplica) -> None:
        model_id = request.metadata.multiplexed_model_id
        if model_id:
            self._last[model_id] = (replica.replica_id, time.monotonic())
            if len(self._last) > 4096:  # bounded: the oldest half goes
                for key in sorted(self._last, key=lambda k: self._last[k][1])[:2048]:
                    del self._last[key]
