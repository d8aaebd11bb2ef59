"""visual-question-answering: ``[{answer, score}, ...]`` for a question about an image.

The body is ``{"inputs": {"image": <base64>, "question": str}, "parameters": {"top_k"?}}``, the
Python client's ``{"inputs": <base64 image>, "question": str, ...}``, or the raw image with
``?question=``. Classifier models (ViLT) pick among their answers: the ``top_k`` best by the
sigmoid of their logits, ``[{answer, score}]``; generative ones (BLIP) write one, ``[{answer}]``
(as transformers 4's pipeline did; the hosted API's clients take a missing score).
"""

from __future__ import annotations

from typing import Optional

from deployments.backends.base import Head

from . import register_task
from ._binary import ImageQuestion, ImageQuestionTask
from ._params import Params, TopK
from ._pipeline import DEFAULT_TOP_K, PIPELINE_MAX_NEW_TOKENS
from .base import BinaryRequest


class Parameters(Params):
    top_k: Optional[TopK] = None


class Request(BinaryRequest):
    inputs: ImageQuestion
    parameters: Parameters = Parameters()


@register_task("visual-question-answering")
class VisualQuestionAnswering(ImageQuestionTask):
    head = Head("visual-question-answering", "AutoModelForVisualQuestionAnswering")
    native_architectures = ("ForVisualQuestionAnswering", "ViltForQuestionAnswering", "BlipForQuestionAnswering")
    loads_architectures = native_architectures
    infer_priority = 15
    request_model = Request

    def run_one(self, model, request):
        image, question = self.image(request), request.inputs.question
        if model.backend.can_generate:
            (answers,) = model.backend.generate_from_image(
                [image], {}, defaults={"max_new_tokens": PIPELINE_MAX_NEW_TOKENS}, question=question)
            return [{"answer": answer.strip()} for answer in answers]
        scores = model.backend.score_image_text(image, question)
        best = sorted(scores, key=lambda pair: pair[1], reverse=True)[:request.parameters.top_k or DEFAULT_TOP_K]
        return [{"answer": answer, "score": float(score)} for answer, score in best]
