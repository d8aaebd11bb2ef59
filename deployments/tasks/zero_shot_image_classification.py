"""zero-shot-image-classification: ``[{label, score}, ...]`` over the request's
``candidate_labels``, best first.

The body is JSON ``{"inputs": <base64 image>, "parameters": {"candidate_labels": [...] (or the
legacy comma-separated string), "hypothesis_template"?}}`` (or the legacy top-level ``image``).
CLIP-style models: one text encoder for the labels, one image encoder.
"""

from __future__ import annotations

from typing import Optional

from pydantic import StrictBytes

from deployments.backends.base import Head

from . import register_task
from ._binary import ImageTask, labels_and_scores, run_grouped
from ._params import CandidateLabels, HypothesisTemplate, Params, with_candidate_labels
from .base import BinaryRequest, Payload


class Parameters(Params):
    candidate_labels: CandidateLabels
    hypothesis_template: Optional[HypothesisTemplate] = None


class Request(BinaryRequest):
    inputs: StrictBytes
    parameters: Parameters


@register_task("zero-shot-image-classification")
class ZeroShotImageClassification(ImageTask):
    head = Head("zero-shot-image-classification", "AutoModelForZeroShotImageClassification", onnx="encoder")
    preprocessors = ("tokenizer", "image_processor")
    pipeline = "zero-shot-image-classification"
    native_architectures = ("CLIPModel", "SiglipModel", "Siglip2Model", "AlignModel")
    loads_architectures = native_architectures
    infer_priority = 20
    request_model = Request

    def request_data(self, payload: Payload) -> dict:
        params = with_candidate_labels(payload.parameters)
        return {"inputs": payload.inputs, "parameters": params}

    def run(self, model, requests):
        return run_grouped(model, requests, lambda req: (self.image(req), {}),
                           lambda req: {"candidate_labels": req.parameters.candidate_labels,
                                        **({"hypothesis_template": req.parameters.hypothesis_template}
                                           if req.parameters.hypothesis_template else {})},
                           labels_and_scores)
