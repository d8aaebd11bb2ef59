"""image-classification: ``[{label, score}, ...]`` for one image (the hosted API's flat list).

The body is the image itself (any content type), or JSON with base64 ``inputs`` (or the
legacy ``image`` field). The replica decodes it (``_media.open_image``).
"""

from __future__ import annotations

from deployments.backends.base import Head

from . import register_task
from ._binary import ClassifierRequest, ImageTask, classify


@register_task("image-classification")
class ImageClassification(ImageTask):
    head = Head("image-classification", "AutoModelForImageClassification", onnx="encoder")
    pipeline = "image-classification"
    native_architectures = ("ForImageClassification",)
    loads_architectures = ("ForImageClassification",)
    infer_priority = 20
    request_model = ClassifierRequest

    def run(self, model, requests):
        return classify(model, requests, lambda req: (self.image(req), {}))
