"""object-detection: ``[{score, label, box: {xmin, ymin, xmax, ymax}}, ...]`` for one image,
corners in integer pixels of the image as sent (after its EXIF orientation).

The body is the image itself (any content type), or JSON with base64 ``inputs`` (or the
legacy ``image`` field) and ``parameters: {"threshold"}``.
"""

from __future__ import annotations

from typing import Optional

from pydantic import StrictBytes

from deployments.backends.base import Head

from . import register_task
from ._binary import ImageTask, run_grouped
from ._params import Params, Probability
from .base import BinaryRequest

#: The pipeline's own default: detections scoring less are dropped.
DEFAULT_THRESHOLD = 0.5


class Parameters(Params):
    threshold: Optional[Probability] = None


class Request(BinaryRequest):
    inputs: StrictBytes
    parameters: Parameters = Parameters()


def _detection(r: dict) -> dict:
    return {"score": float(r["score"]), "label": r["label"],
            "box": {k: int(round(float(r["box"][k]))) for k in ("xmin", "ymin", "xmax", "ymax")}}


@register_task("object-detection")
class ObjectDetection(ImageTask):
    # NOTE(hubserve): optimum has no ONNX Runtime class for detection heads: torch only.
    head = Head("object-detection", "AutoModelForObjectDetection")
    pipeline = "object-detection"
    native_architectures = ("ForObjectDetection",)
    loads_architectures = ("ForObjectDetection",)
    infer_priority = 20
    request_model = Request

    def run(self, model, requests):
        return run_grouped(model, requests, lambda req: (self.image(req), {}),
                           lambda req: {"threshold": DEFAULT_THRESHOLD if req.parameters.threshold is None
                                        else float(req.parameters.threshold)},
                           lambda rows: [_detection(r) for r in rows])
