"""What the torch backend and its task calls share: load errors, deadlines, the seed lock and
the streaming hooks of ``generate``."""

from __future__ import annotations

import importlib
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import LogitsProcessor, StoppingCriteria

from hubserve.errors import ModelLoadError, ModelUnsupported, ServiceUnavailable

from .base import PREPROCESSORS

#: How transformers starts the error of a keyword ``generate`` does not take.
UNUSED_KWARGS = "The following `model_kwargs` are not used by the model"
#: Held while a seeded run draws its random numbers.
seed_lock = threading.Lock()

DONE = object()


def unsupported(path: Path, exc: Exception) -> ModelUnsupported:
    """The 400 of a folder transformers cannot load, naming its model type and transformers' version."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        model_type = config.get("model_type") if isinstance(config, dict) else None
    except (OSError, ValueError):
        model_type = None
    version = transformers.__version__
    first = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
    if isinstance(model_type, str) and model_type not in transformers.CONFIG_MAPPING:
        return ModelUnsupported(f"{path.name} has model type `{model_type[:100]}`, which transformers {version} "
                                "does not know; it cannot be served here")
    kind = f"model type `{model_type[:100]}`" if isinstance(model_type, str) else "no model type"
    return ModelUnsupported(f"{path.name} ({kind}) cannot be loaded by transformers {version}: "
                            f"{type(exc).__name__}: {first}")


def check_timm(path: Path) -> None:
    """A timm checkpoint loads through transformers' TimmWrapper, which imports timm: says so
    plainly when timm does not import here."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(config, dict) or "model_type" in config or not isinstance(config.get("architecture"), str):
        return
    try:
        importlib.import_module("timm")
    except Exception as exc:  # noqa: BLE001 - timm fails to import in several ways (torchvision's CUDA build)
        raise ModelLoadError(
            f"{path.name} is a timm model ({config['architecture']}): serving it needs the timm package, which "
            f"does not import on this server ({type(exc).__name__}: {exc}). Install timm with a torchvision "
            "built for this torch") from None


def load_preprocessor(key: str, path: Path) -> Any:
    return getattr(transformers, PREPROCESSORS[key]).from_pretrained(path, trust_remote_code=False)


def apply_deadline(kwargs: dict) -> None:
    """Turns a ``deadline`` (epoch seconds) into generate's ``max_time`` stopping criterion, so
    a generation never outlives the request that asked for it."""
    deadline = kwargs.pop("deadline", None)
    if deadline is None:
        return
    left = deadline - time.time()
    if left <= 0:
        raise ServiceUnavailable("The request timed out before its generation started", headers={"Retry-After": "1"})
    kwargs["max_time"] = min(kwargs.get("max_time") or left, left)


class QueueStreamer:
    """A transformers streamer that hands each generated token id to a queue."""

    def __init__(self, events: queue.Queue) -> None:
        self.events = events
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt ids
            self.prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            self.events.put(int(token_id))

    def end(self) -> None:
        pass


class Cancelled(StoppingCriteria):
    """Stops a generation once its event is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class LogprobRecorder(LogitsProcessor):
    """Keeps each step's log-probabilities (of the distribution sampled from)."""

    def __init__(self) -> None:
        self.steps: list = []

    def __call__(self, input_ids, scores):
        self.steps.append(torch.log_softmax(scores[0].float(), dim=-1))
        return scores

    def logprob(self, step: int, token_id: int) -> float:
        return float(self.steps[step][token_id]) if step < len(self.steps) else 0.0


class ImageClassificationPipeline(transformers.ImageClassificationPipeline):
    """transformers' image classification pipeline with its answer unchanged, but the config read
    once per image: transformers 5's ``postprocess`` reads ``config.id2label`` once per label,
    and each read of a transformers 5 config costs about a microsecond and a half, 3 ms an image
    over ImageNet's 1,000 labels."""

    def postprocess(self, model_outputs, function_to_apply=None, top_k=5):
        from transformers.pipelines.image_classification import ClassificationFunction, sigmoid, softmax

        config = self.model.config
        problem, count, labels = config.problem_type, config.num_labels, config.id2label
        if function_to_apply is None:
            if problem == "regression":
                function_to_apply = ClassificationFunction.NONE
            elif problem == "multi_label_classification" or count == 1:
                function_to_apply = ClassificationFunction.SIGMOID
            elif problem == "single_label_classification" or count > 1:
                function_to_apply = ClassificationFunction.SOFTMAX
            else:
                function_to_apply = getattr(config, "function_to_apply", ClassificationFunction.NONE)
        outputs = model_outputs["logits"][0].to(torch.float32).numpy()
        scores = {ClassificationFunction.SIGMOID: sigmoid, ClassificationFunction.SOFTMAX: softmax,
                  ClassificationFunction.NONE: lambda x: x}[ClassificationFunction(function_to_apply)](outputs).tolist()
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)  # stable, as the pipeline's sort
        if top_k is not None:
            order = order[:min(top_k, count)]
        return [{"label": labels[i], "score": scores[i]} for i in order]


#: The pipeline classes the torch backend builds in place of transformers' own (same answers, faster).
PIPELINE_CLASSES = {"image-classification": ImageClassificationPipeline}
