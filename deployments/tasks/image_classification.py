"""image-classification: ``[{label, score}, ...]`` for one image (the hosted API's flat list).

The body is the image itself (any content type), or JSON with base64 ``inputs`` (or the
legacy ``image`` field). The replica decodes it (``_media.open_image``).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import StrictBytes

from deployments.backends.base import Head
from hubserve.errors import InvalidInput

from . import register_task
from ._media import open_image
from ._params import Params, TopK
from .base import Task, TaskRequest

#: The pipeline's own default: the five best labels.
DEFAULT_TOP_K = 5


class Parameters(Params):
    function_to_apply: Optional[Literal["sigmoid", "softmax", "none"]] = None
    top_k: Optional[TopK] = None


class Request(TaskRequest):
    inputs: StrictBytes
    parameters: Parameters = Parameters()


@register_task("image-classification")
class ImageClassification(Task):
    head = Head("image-classification", "AutoModelForImageClassification", "ORTModelForImageClassification",
                "image-classification")
    preprocessors = ("image_processor",)
    input_kind = "binary"
    binary_field = "image"
    pipeline = "image-classification"
    native_architectures = ("ForImageClassification",)
    loads_architectures = ("ForImageClassification",)
    infer_priority = 20
    request_model = Request

    def run(self, model, requests):
        out: list = [None] * len(requests)
        # NOTE(hubserve): one pipeline call per distinct parameter set; images that do not
        # decode fail alone.
        groups: dict[tuple, list[tuple[int, object]]] = {}
        for i, req in enumerate(requests):
            try:
                image = open_image(req.inputs, req.limits)
            except InvalidInput as exc:  # this request alone fails
                out[i] = exc
                continue
            key = (req.parameters.function_to_apply, req.parameters.top_k or DEFAULT_TOP_K)
            groups.setdefault(key, []).append((i, image))
        for (fn, top_k), members in groups.items():
            kwargs = {"top_k": top_k, **({"function_to_apply": fn} if fn else {})}
            rows = model.backend.forward([image for _, image in members], **kwargs)
            for (i, _), row in zip(members, rows):
                out[i] = [{"label": r["label"], "score": float(r["score"])} for r in row]
        return out
