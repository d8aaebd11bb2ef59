"""image-segmentation: ``[{score, label, mask}, ...]``, each mask a base64 single-channel PNG
of the image's size (255 inside the segment).

The body is the image itself (any content type), or JSON with base64 ``inputs`` (or the
legacy ``image`` field) and ``parameters: {"threshold", "mask_threshold",
"overlap_mask_area_threshold", "subtask"}``. Semantic segmentation models give no score: it
is 1.0 (the JS client requires a number), as the hosted API's toolkit answers.
"""

from __future__ import annotations

import base64
import io
from typing import Literal, Optional

from pydantic import StrictBytes

from deployments.backends.base import Head

from . import register_task
from ._binary import ImageTask, run_grouped
from ._params import Params, Probability
from .base import BinaryRequest

SEMANTIC = Head("semantic-segmentation", "AutoModelForSemanticSegmentation", onnx="encoder")
#: Panoptic and instance models (MaskFormer, Mask2Former, OneFormer) and DETR's
#: ``DetrForSegmentation``: torch only.
UNIVERSAL = Head("universal-segmentation", "AutoModelForUniversalSegmentation")
UNIVERSAL_SUFFIXES = ("ForUniversalSegmentation", "ForInstanceSegmentation")
DETR_SEGMENTATION = Head("image-segmentation", "AutoModelForImageSegmentation")


class Parameters(Params):
    threshold: Optional[Probability] = None
    mask_threshold: Optional[Probability] = None
    overlap_mask_area_threshold: Optional[Probability] = None
    subtask: Optional[Literal["instance", "panoptic", "semantic"]] = None


class Request(BinaryRequest):
    inputs: StrictBytes
    parameters: Parameters = Parameters()


def png_base64(mask) -> str:
    """A PIL mask as the base64 of a single-channel PNG."""
    buffer = io.BytesIO()
    mask.convert("L").save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _segment(r: dict) -> dict:
    return {"score": 1.0 if r.get("score") is None else float(r["score"]), "label": r["label"],
            "mask": png_base64(r["mask"])}


@register_task("image-segmentation")
class ImageSegmentation(ImageTask):
    head = SEMANTIC
    pipeline = "image-segmentation"
    native_architectures = ("ForSemanticSegmentation", "ForSegmentation", *UNIVERSAL_SUFFIXES)
    loads_architectures = native_architectures
    infer_priority = 20
    request_model = Request

    def head_for(self, ref) -> Head:
        if any(a.endswith("ForSemanticSegmentation") for a in ref.architectures):
            return SEMANTIC
        if any(a.endswith(UNIVERSAL_SUFFIXES) for a in ref.architectures):
            return UNIVERSAL
        return DETR_SEGMENTATION

    def run(self, model, requests):
        return run_grouped(model, requests, lambda req: (self.image(req), {}),
                           lambda req: req.parameters.known(), lambda rows: [_segment(r) for r in rows])
