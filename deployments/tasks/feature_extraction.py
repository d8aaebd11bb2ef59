"""feature-extraction.

Shape rule (as the legacy wire): a sentence-transformers model gives one pooled
vector per input, so a string gives ``[float]`` (1-D) and a list ``[[float]]``
(2-D); a plain transformers model gives token embeddings, so a string gives
``[[[float]]]`` (1 x tokens x hidden) and a list one ``tokens x hidden`` matrix
per input. Options may sit at the root of the body (as the current client sends
them) or under ``parameters``.
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import StrictStr

from hubserve.errors import InvalidInput

from . import register_task
from ._heads import BASE
from ._embedding import apply_prompt, l2_normalize, load_pooling, sentence_embeddings
from ._params import Flag, Params, PositiveInt, TextOrTexts, as_list
from .base import Payload, Task, TaskRequest

ROOT_OPTIONS = ("normalize", "prompt_name", "truncate", "truncation_direction", "dimensions", "encoding_format")


class Parameters(Params):
    normalize: Optional[Flag] = None
    prompt_name: Optional[StrictStr] = None
    truncate: Optional[Flag] = None
    truncation_direction: Optional[Literal["left", "right", "Left", "Right"]] = None
    dimensions: Optional[PositiveInt] = None
    encoding_format: Optional[Literal["float"]] = None


class Request(TaskRequest):
    inputs: TextOrTexts
    parameters: Parameters = Parameters()


def _direction(params: Parameters) -> str:
    return (params.truncation_direction or "right").lower()


@register_task("feature-extraction")
class FeatureExtraction(Task):
    head = BASE
    native_architectures = ("Model",)
    loads_architectures = None
    infer_priority = 90
    request_model = Request

    def request_data(self, payload: Payload) -> dict:
        params = dict(payload.parameters)
        for key in ROOT_OPTIONS:
            if key in payload.extra and key not in params:
                params[key] = payload.extra[key]
        return {"inputs": payload.inputs, "parameters": params}

    def prepare(self, ref, backend):
        return load_pooling(ref.path)

    def run(self, model, requests):
        if not model.state.sentence_transformers:
            return super().run(model, requests)
        # NOTE(hubserve): pooled models embed a whole batch of requests in one pass
        # per distinct (truncate, direction, prompt) setting.
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            p = req.parameters
            groups.setdefault((p.truncate is not False, _direction(p), p.prompt_name), []).append(i)
        out: list = [None] * len(requests)
        for (truncate, direction, prompt), members in groups.items():
            texts = [t for i in members for t in as_list(requests[i].inputs)[0]]
            try:
                vectors = sentence_embeddings(model, texts, truncate=truncate, direction=direction,
                                              prompt_name=prompt, normalize=False)
            except InvalidInput as exc:
                for i in members:
                    out[i] = exc
                continue
            pos = 0
            for i in members:
                items, is_list = as_list(requests[i].inputs)
                block = self._finish(model, vectors[pos:pos + len(items)], requests[i].parameters)
                pos += len(items)
                out[i] = block if is_list or isinstance(block, InvalidInput) else block[0]
        return out

    def _finish(self, model, vectors: np.ndarray, params: Parameters):
        if params.dimensions is not None:
            if params.dimensions > vectors.shape[-1]:
                return InvalidInput(
                    f"dimensions ({params.dimensions}) is larger than the model's {vectors.shape[-1]}"
                )
            vectors = vectors[..., : params.dimensions]
        normalize = model.state.normalize if params.normalize is None else params.normalize
        return l2_normalize(vectors) if normalize else vectors

    def run_one(self, model, request):
        # Token embeddings of a plain transformers model, one matrix per input.
        params = request.parameters
        items, is_list = as_list(request.inputs)
        texts = apply_prompt(model.state, items, params.prompt_name)
        hidden, mask = model.backend.embed(texts, truncate=params.truncate is not False,
                                           truncation_side=_direction(params))
        out = []
        for row in range(hidden.shape[0]):
            tokens = self._finish(model, hidden[row, mask[row].astype(bool)], params)
            if isinstance(tokens, InvalidInput):
                raise tokens
            out.append(tokens)
        return out if is_list else [out[0]]
