"""document-question-answering: ``[{answer, score, start, end}, ...]`` for a question about a
document page (an image), ``start``/``end`` counting words.

The body is ``{"inputs": {"image": <base64>, "question": str}, "parameters": {...}}`` (or the
client forms of visual-question-answering). LayoutLM models read the page's words and boxes:
``parameters.word_boxes`` gives them (``[[word, [x0, y0, x1, y1]], ...]``, boxes on a 0-1000
scale), else Tesseract reads them (OCR); without Tesseract installed that is a clear 400.
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Annotated, Optional

from pydantic import Field, StrictStr

from deployments.backends.base import Head
from hubserve.errors import InvalidInput

from . import register_task
from ._binary import ImageQuestion, ImageQuestionTask
from ._params import Limit, Number
from .base import BinaryRequest
from .question_answering import SpanParameters, check_span_window

Coordinate = Annotated[Number, Field(ge=0, le=1000)]
WordBox = tuple[StrictStr, Annotated[list[Coordinate], Field(min_length=4, max_length=4)]]
#: Tesseract language names (``eng``, ``deu+fra``): the value reaches its command line.
Language = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z_]{1,15}(\+[a-z][a-z_]{1,15}){0,4}$")]


class Parameters(SpanParameters):
    lang: Optional[Language] = None
    word_boxes: Optional[Annotated[list[WordBox], Field(min_length=1), Limit("max_document_words")]] = None


class Request(BinaryRequest):
    inputs: ImageQuestion
    parameters: Parameters = Parameters()


def has_ocr() -> bool:
    """Whether Tesseract (the binary and pytesseract) is installed."""
    return importlib.util.find_spec("pytesseract") is not None and shutil.which("tesseract") is not None


@register_task("document-question-answering")
class DocumentQuestionAnswering(ImageQuestionTask):
    head = Head("document-question-answering", "AutoModelForDocumentQuestionAnswering")
    preprocessors = ("tokenizer",)
    #: LayoutLMv2/v3 read pixels too, through their image processor.
    optional_preprocessors = ("image_processor",)
    pipeline = "document-question-answering"
    native_architectures = ("LayoutLMForQuestionAnswering", "LayoutLMv2ForQuestionAnswering",
                            "LayoutLMv3ForQuestionAnswering")
    loads_architectures = native_architectures
    infer_priority = 15
    request_model = Request

    def run_one(self, model, request):
        params = request.parameters.known()
        check_span_window(params, model.backend.max_input_tokens)
        word_boxes = params.pop("word_boxes", None)
        if word_boxes is None and not has_ocr():
            raise InvalidInput(f"{model.ref.model_id} reads the words of the page, and this server has no OCR "
                               "(Tesseract and pytesseract are not installed): send them in "
                               "`parameters.word_boxes` as [[word, [x0, y0, x1, y1]], ...] (0-1000 scale)")
        if word_boxes is not None:
            params["word_boxes"] = [(word, [int(round(c)) for c in box]) for word, box in word_boxes]
        out = model.backend.forward(image=self.image(request), question=request.inputs.question, **params)
        return [{"answer": r["answer"], "score": float(r["score"]), "start": int(r["start"]), "end": int(r["end"])}
                for r in (out if isinstance(out, list) else [out])]
