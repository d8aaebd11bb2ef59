"""fill-mask: ``[{score, token, token_str, sequence}]`` (a list per mask when several)."""

from __future__ import annotations

from typing import Annotated, Optional, Union

from pydantic import StrictStr

from hubserve.errors import InvalidInput

from . import register_task
from ._heads import MASKED_LM
from ._params import Limit, Params, TextOrTexts, TopK, as_list
from .base import Task, TaskRequest


class Parameters(Params):
    top_k: Optional[TopK] = None
    targets: Optional[Annotated[Union[StrictStr, list[StrictStr]], Limit("max_candidate_labels")]] = None


class Request(TaskRequest):
    inputs: TextOrTexts
    parameters: Parameters = Parameters()


def _row(r: dict) -> dict:
    return {"score": float(r["score"]), "token": int(r["token"]), "token_str": r["token_str"], "sequence": r["sequence"]}


@register_task("fill-mask")
class FillMask(Task):
    head = MASKED_LM
    pipeline = "fill-mask"
    native_architectures = ("ForMaskedLM",)
    loads_architectures = ("ForMaskedLM",)
    infer_priority = 30
    request_model = Request

    def run_one(self, model, request):
        mask = model.backend.mask_token
        texts, is_list = as_list(request.inputs)
        for text in texts:
            if not mask or mask not in text:
                raise InvalidInput(f"No mask_token ({mask}) found on the input")
        params = request.parameters.known()
        if params.get("targets") == [] or params.get("targets") == "":
            raise InvalidInput("`targets` must hold at least one target when given: received `targets` in `parameters`")
        if "top_k" in params:
            # NOTE(hubserve): the pipeline's topk fails past the vocabulary (a 500 for the whole batch).
            params["top_k"] = min(params["top_k"], model.backend.vocab_size)
        results = []
        for text in texts:
            out = model.backend.forward(text, **params)
            if out and isinstance(out[0], list):
                results.append([[_row(r) for r in group] for group in out])
            else:
                results.append([_row(r) for r in out])
        return results if is_list else results[0]
