"""zero-shot-classification: ``{sequence, labels, scores}`` or ``[{label, score}]`` by client."""

from __future__ import annotations

import re
from typing import Optional, Union

from pydantic import Field, StrictStr, ValidationInfo, field_validator

from . import register_task
from ._heads import SEQUENCE_CLASSIFICATION
from ._params import Flag, Params, limits_of
from .base import Context, Payload, Task, TaskRequest

_HUB_UA = re.compile(r"hf_hub/(\d+)\.(\d+)")


class Parameters(Params):
    candidate_labels: Union[StrictStr, list[StrictStr]]
    multi_label: Optional[Flag] = None
    hypothesis_template: Optional[StrictStr] = None

    @field_validator("candidate_labels")
    @classmethod
    def _labels(cls, value, info: ValidationInfo):
        labels = [s.strip() for s in value.split(",")] if isinstance(value, str) else [s.strip() for s in value]
        labels = [s for s in labels if s]
        if not labels:
            raise ValueError("at least one candidate label is required")
        bound = limits_of(info).max_candidate_labels
        if len(labels) > bound:
            raise ValueError(f"`candidate_labels` has {len(labels)} items, more than this server allows "
                             f"({bound}, limits.max_candidate_labels)")
        return labels

    @field_validator("hypothesis_template")
    @classmethod
    def _template(cls, value):
        if value is not None and "{}" not in value:
            raise ValueError("hypothesis_template must contain {} where the label goes")
        return value


class Request(TaskRequest):
    inputs: StrictStr = Field(min_length=1)
    parameters: Parameters


def wants_dict(context: Context) -> bool:
    """The legacy dict shape for huggingface_hub < 1.2 (it cannot parse the list form)."""
    if context.zero_shot_format != "auto":
        return context.zero_shot_format == "dict"
    match = _HUB_UA.search(context.user_agent or "")
    return bool(match) and (int(match.group(1)), int(match.group(2))) < (1, 2)


@register_task("zero-shot-classification")
class ZeroShotClassification(Task):
    head = SEQUENCE_CLASSIFICATION
    pipeline = "zero-shot-classification"
    native_architectures = ()
    loads_architectures = ("ForSequenceClassification",)
    request_model = Request

    def request_data(self, payload: Payload) -> dict:
        params = dict(payload.parameters)
        if "candidateLabels" in params and "candidate_labels" not in params:
            params["candidate_labels"] = params.pop("candidateLabels")
        inputs = payload.inputs
        if isinstance(inputs, dict):
            inputs = inputs.get("text", inputs.get("sequences"))
        return {"inputs": inputs, "parameters": params}

    def run_one(self, model, request):
        params = request.parameters.known()
        labels = params.pop("candidate_labels")
        out = model.backend.forward(request.inputs, candidate_labels=labels, **params)
        return {"sequence": out["sequence"], "labels": list(out["labels"]), "scores": [float(s) for s in out["scores"]]}

    def format(self, request, output, context):
        if wants_dict(context):
            return output
        return [{"label": label, "score": score} for label, score in zip(output["labels"], output["scores"])]
