"""text-classification: ``[[{label, score}, ...]]``, one inner list per input."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, StrictStr

from . import register_task
from ._heads import SEQUENCE_CLASSIFICATION
from ._params import Params, TopK, as_list
from .base import Task, TaskRequest


class TextPair(BaseModel):
    """A reranker-style input: ``{"text": ..., "text_pair": ...}``."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr
    text_pair: Optional[StrictStr] = None


class Parameters(Params):
    function_to_apply: Optional[Literal["sigmoid", "softmax", "none"]] = None
    top_k: Optional[TopK] = None


Item = Union[StrictStr, TextPair]


class Request(TaskRequest):
    inputs: Union[Item, list[Item]]
    parameters: Parameters = Parameters()


@register_task("text-classification")
class TextClassification(Task):
    head = SEQUENCE_CLASSIFICATION
    pipeline = "text-classification"
    native_architectures = ("ForSequenceClassification",)
    loads_architectures = ("ForSequenceClassification",)
    infer_priority = 20
    request_model = Request

    def run(self, model, requests):
        # NOTE(hubserve): one pipeline call per distinct function_to_apply, so a
        # batch of single-sentence requests becomes one forward pass.
        groups: dict[Optional[str], list[tuple[int, list]]] = {}
        for i, req in enumerate(requests):
            items, _ = as_list(req.inputs)
            texts = [it.model_dump(exclude_none=True) if isinstance(it, TextPair) else it for it in items]
            groups.setdefault(req.parameters.function_to_apply, []).append((i, texts))
        out: list = [None] * len(requests)
        for fn, members in groups.items():
            flat = [t for _, texts in members for t in texts]
            kwargs = {"top_k": None}
            if fn:
                kwargs["function_to_apply"] = fn
            scores = model.backend.forward(flat, **kwargs)
            pos = 0
            for i, texts in members:
                rows = scores[pos:pos + len(texts)]
                pos += len(texts)
                k = requests[i].parameters.top_k
                out[i] = [
                    [{"label": r["label"], "score": float(r["score"])} for r in row[:k]]
                    for row in rows
                ]
        return out
