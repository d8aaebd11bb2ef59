"""How the task deployments, the ingress and the models pinned in the config run."""

from __future__ import annotations

from typing import Optional, Union

from pydantic import Field, model_validator

from .base import Backend, Device, Dtype, StrictModel

class Autoscaling(StrictModel):
    """Replica autoscaling of one task deployment (Ray Serve ``autoscaling_config``)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(4.0, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)

    def serve_config(self) -> dict:
        """Ray Serve's ``autoscaling_config`` (starting at ``min_replicas``)."""
        return {"min_replicas": self.min_replicas, "initial_replicas": self.min_replicas,
                "max_replicas": self.max_replicas, "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s, "downscale_delay_s": self.downscale_delay_s}

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_replicas < max(self.min_replicas, 1):
            raise ValueError("autoscaling.max_replicas must be >= min_replicas")
        return self


class TaskDeployment(StrictModel):
    """How the deployment of one task runs its replicas.

    Every field is optional here so that ``tasks.<name>`` can override only some of
    ``deployment_defaults``; ``AppConfig.deployment_for`` merges them.
    """

    num_cpus: Optional[float] = Field(None, ge=0)
    num_gpus: Optional[float] = Field(None, ge=0)
    threads: Optional[int] = Field(None, ge=1, description="torch/ORT threads per replica")
    max_models_per_replica: Optional[int] = Field(None, ge=1)
    max_batch_size: Optional[int] = Field(None, ge=1)
    batch_wait_timeout_s: Optional[float] = Field(None, ge=0)
    max_ongoing_requests: Optional[int] = Field(None, ge=1)
    max_queued_requests: Optional[int] = Field(None, ge=-1)
    max_model_bytes: Optional[int] = Field(
        None, ge=1, description="memory budget for loaded models per replica (weights bytes)"
    )
    autoscaling: Optional[Autoscaling] = None
    max_replicas_per_node: Optional[int] = Field(
        None, ge=1, description="Serve's max_replicas_per_node: 1 spreads the replicas one per node (unset: no limit)")
    backend: Optional[Backend] = None
    device: Optional[Device] = None
    dtype: Optional[Dtype] = Field(None, description="float16 halves GPU memory (torch on cuda only)")


DEFAULT_DEPLOYMENT = TaskDeployment(
    num_cpus=0.1,
    num_gpus=0,
    threads=None,
    max_models_per_replica=4,
    max_batch_size=16,
    batch_wait_timeout_s=0.002,
    max_ongoing_requests=32,
    max_queued_requests=-1,
    max_model_bytes=4 * 1024**3,
    autoscaling=Autoscaling(),
    backend="torch",
    device="cpu",
    dtype="float32",
)


class ModelEntry(StrictModel):
    """Options pinned for one model id. Models need no entry to be served."""

    path: Optional[str] = Field(
        None,
        description="a folder, or pkg://<module> for a package exposing get_model_path()",
    )
    task: Optional[str] = None
    backend: Optional[Backend] = None
    device: Optional[Device] = None
    dtype: Optional[Dtype] = Field(None, description="float16 halves GPU memory (torch on cuda only)")
    preload: Union[bool, list[str]] = Field(
        False, description="load at start: true for the model's task, or a list of tasks"
    )
    trust_pickle: bool = Field(
        False, description="allow pickle weights (.bin, .pt...) for this model: they can run code when loaded"
    )

    def preload_tasks(self, own_task: Optional[str]) -> list[str]:
        """The tasks whose deployments load this model at start."""
        if isinstance(self.preload, list):
            return list(self.preload)
        return [own_task] if self.preload and own_task else []


class IngressDeployment(StrictModel):
    """The HTTP ingress deployment.

    Tasks in ``inline`` run in the ingress replicas themselves when the model runs
    without torch (embedding models on ONNX Runtime): a request then takes one Python
    hop instead of two. Their other models (e.g. an architecture ONNX cannot export)
    go to the task's own deployment.
    """

    num_cpus: float = Field(0.1, ge=0)
    num_replicas: int = Field(1, ge=1, description="replicas when autoscaling is not set")
    autoscaling: Optional[Autoscaling] = None
    max_ongoing_requests: int = Field(512, ge=1)
    max_replicas_per_node: Optional[int] = Field(
        None, ge=1, description="Serve's max_replicas_per_node: 1 gives each node's proxy an ingress replica of its own, "
                                "also after a node comes back")
    inline: list[str] = Field(default_factory=list, description="embedding tasks the ingress runs itself")
    threads: int = Field(1, ge=1, description="ONNX Runtime threads per ingress replica for inline models")
    client_header_timeout_s: float = Field(
        10.0, gt=0, description="seconds a client has to send a request's headers, and an idle connection waits "
                                "for the next request (HAProxy; Serve's proxy: the idle wait only)")
    client_body_timeout_s: float = Field(
        60.0, gt=0, description="seconds a client may pause while it sends a body or reads an answer (HAProxy)")
