"""visual-question-answering: ``[{answer, score}, ...]`` for a question about an image.

The body is ``{"inputs": {"image": <base64>, "question": str}, "parameters": {"top_k"?}}``, the
Python client's ``{"inputs": <base64 image>, "question": str, ...}``, or the raw image with
``?question=``. Classifier models (ViLT) pick among their answers; generative ones (BLIP)
write one.
"""

from __future__ import annotations

from typing import Optional

from deployments.backends.base import Head

from . import register_task
from ._binary import ImageQuestion, ImageQuestionTask
from ._params import Params, TopK
from .base import BinaryRequest

#: The pipeline's own default.
DEFAULT_TOP_K = 5


class Parameters(Params):
    top_k: Optional[TopK] = None


class Request(BinaryRequest):
    inputs: ImageQuestion
    parameters: Parameters = Parameters()


@register_task("visual-question-answering")
class VisualQuestionAnswering(ImageQuestionTask):
    head = Head("visual-question-answering", "AutoModelForVisualQuestionAnswering")
    pipeline = "visual-question-answering"
    native_architectures = ("ForVisualQuestionAnswering", "ViltForQuestionAnswering", "BlipForQuestionAnswering")
    loads_architectures = native_architectures
    infer_priority = 15
    request_model = Request

    def run_one(self, model, request):
        out = model.backend.forward(image=self.image(request), question=request.inputs.question,
                                    top_k=request.parameters.top_k or DEFAULT_TOP_K)
        return [{"answer": r["answer"], "score": float(r["score"])} for r in out]
