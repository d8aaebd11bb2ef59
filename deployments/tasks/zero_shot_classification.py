"""zero-shot-classification: ``{sequence, labels, scores}`` or ``[{label, score}]`` by client."""

from __future__ import annotations

import re
from typing import Optional

from pydantic import Field, StrictStr

from . import register_task
from ._heads import SEQUENCE_CLASSIFICATION
from ._params import CandidateLabels, Flag, HypothesisTemplate, Params, with_candidate_labels
from .base import Context, Payload, Task, TaskRequest

_HUB_UA = re.compile(r"hf_hub/(\d+)\.(\d+)")


class Parameters(Params):
    candidate_labels: CandidateLabels
    multi_label: Optional[Flag] = None
    hypothesis_template: Optional[HypothesisTemplate] = None


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
        params = with_candidate_labels(payload.parameters)
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
