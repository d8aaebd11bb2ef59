"""token-classification (NER): ``[{entity_group, score, word, start, end}]``, default ``simple``."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import StrictStr, model_validator

from . import register_task
from ._heads import TOKEN_CLASSIFICATION
from ._params import Limit, NonNegativeInt, Params, TextOrTexts, as_list
from hubserve.errors import InvalidInput

from .base import Task, TaskRequest


class Parameters(Params):
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = "simple"
    ignore_labels: Optional[Annotated[list[StrictStr], Limit("max_candidate_labels")]] = None
    stride: Optional[NonNegativeInt] = None


class Request(TaskRequest):
    inputs: TextOrTexts
    parameters: Parameters = Parameters()

    @model_validator(mode="after")
    def _stride_needs_aggregation(self):
        if self.parameters.stride is not None and self.parameters.aggregation_strategy == "none":
            raise ValueError("`stride` needs an aggregation_strategy other than `none`")
        return self


def _clean(entity: dict) -> dict:
    out = {}
    for key, value in entity.items():
        if key in ("score",):
            out[key] = float(value)
        elif key in ("start", "end", "index") and value is not None:
            out[key] = int(value)
        else:
            out[key] = value
    return out


@register_task("token-classification")
class TokenClassification(Task):
    head = TOKEN_CLASSIFICATION
    pipeline = "token-classification"
    native_architectures = ("ForTokenClassification",)
    loads_architectures = ("ForTokenClassification",)
    infer_priority = 20
    request_model = Request

    def run_one(self, model, request):
        params = request.parameters
        texts, is_list = as_list(request.inputs)
        kwargs = {"aggregation_strategy": params.aggregation_strategy}
        if params.ignore_labels is not None:
            kwargs["ignore_labels"] = params.ignore_labels
        if params.stride is not None:
            if params.stride >= model.backend.max_input_tokens - 2:
                raise InvalidInput(
                    f"`stride` ({params.stride}) must be less than the model's input limit "
                    f"({model.backend.max_input_tokens} tokens) minus its special tokens"
                )
            kwargs["stride"] = params.stride
        results = [model.backend.forward(t, **kwargs) for t in texts]
        results = [[_clean(e) for e in r] for r in results]
        return results if is_list else results[0]
