"""question-answering: ``{answer, score, start, end}``, or a list when ``top_k > 1``."""

from __future__ import annotations

from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from hubserve.errors import InvalidInput

from . import register_task
from ._heads import QUESTION_ANSWERING
from ._params import Flag, Params, QATokens, TopK
from ._spans import best_answers, encode_windows
from .base import Payload, Task, TaskRequest


class QAInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: StrictStr = Field(min_length=1)
    context: StrictStr = Field(min_length=1)


class SpanParameters(Params):
    """The parameters of extractive question answering, over text or a document page."""

    top_k: Optional[TopK] = None
    doc_stride: Optional[QATokens] = None
    max_answer_len: Optional[QATokens] = None
    max_seq_len: Optional[QATokens] = None
    max_question_len: Optional[QATokens] = None
    handle_impossible_answer: Optional[Flag] = None

    @model_validator(mode="after")
    def _stride_fits(self):
        if self.doc_stride is not None and self.max_seq_len is not None and self.doc_stride > self.max_seq_len:
            raise ValueError(f"doc_stride ({self.doc_stride}) is larger than max_seq_len ({self.max_seq_len})")
        return self


class Parameters(SpanParameters):
    align_to_words: Optional[Flag] = None


class Request(TaskRequest):
    inputs: Union[QAInput, list[QAInput]]
    parameters: Parameters = Parameters()


def check_span_window(params: dict, limit: int) -> None:
    """Refuses a ``max_seq_len`` over the model's input limit (``limit`` tokens), or a
    ``doc_stride`` over half of it (the text is cut into windows every ``max_seq_len -
    doc_stride`` tokens)."""
    seq, stride = span_window(params, limit)
    if seq > limit:
        raise InvalidInput(f"`max_seq_len` ({seq}) is larger than the model's input limit ({limit} tokens)")
    if stride > seq // 2:
        raise InvalidInput(f"`doc_stride` ({stride}) must be at most half of max_seq_len ({seq})")


def span_window(params: dict, limit: int) -> tuple[int, int]:
    """``(max_seq_len, doc_stride)`` of a request: the given ones, else the pipeline's defaults
    (384 tokens, or the model's limit if less; half of that, at most 128)."""
    seq = params.get("max_seq_len", min(384, limit))
    return seq, params.get("doc_stride", min(seq // 2, 128))


@register_task("question-answering")
class QuestionAnswering(Task):
    """Extractive answers, as transformers 4's question-answering pipeline gave them (transformers
    5 removed it): the task tokenizes the windows and picks the spans (``_spans``), the backend
    only runs the model (``Backend.logits``), so any backend of the head serves it."""

    head = QUESTION_ANSWERING
    native_architectures = ("ForQuestionAnswering",)
    loads_architectures = ("ForQuestionAnswering",)
    infer_priority = 20
    request_model = Request

    def request_data(self, payload: Payload) -> dict:
        # NOTE(hubserve): huggingface_hub <= 0.24 sent question/context at the top level.
        inputs = payload.inputs
        if inputs is None and ("question" in payload.extra or "context" in payload.extra):
            inputs = {k: payload.extra.get(k) for k in ("question", "context")}
        return {"inputs": inputs, "parameters": payload.parameters}

    def run_one(self, model, request):
        params = request.parameters.known()
        check_span_window(params, model.backend.max_input_tokens)
        seq, stride = span_window(params, model.backend.max_input_tokens)
        choice = {k: params[k] for k in ("top_k", "max_answer_len", "handle_impossible_answer", "align_to_words")
                  if k in params}
        top_k = params.get("top_k", 1)
        items = request.inputs if isinstance(request.inputs, list) else [request.inputs]
        results = []
        for item in items:
            windows, outputs = model.backend.logits(
                lambda tokenizer, q=item.question, c=item.context: encode_windows(tokenizer, q, c, seq, stride))
            logits = [(out["start_logits"], out["end_logits"]) for out in outputs]
            answers = [_answer(a) for a in best_answers(windows, logits, item.context, **choice)]
            if top_k > 1:
                results.append(answers)
            elif answers:
                results.append(answers[0])
            else:
                raise InvalidInput("the context holds no token an answer could be made of")
        return results if isinstance(request.inputs, list) else results[0]


def _answer(a: dict) -> dict:
    return {"score": float(a["score"]), "start": int(a["start"]), "end": int(a["end"]), "answer": a["answer"]}
