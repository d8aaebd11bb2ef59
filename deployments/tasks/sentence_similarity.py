"""sentence-similarity: cosine similarities ``[float]`` of ``sentences`` to ``source_sentence``."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from . import register_task
from ._heads import BASE
from ._embedding import load_pooling, sentence_embeddings
from ._params import Flag, Limit, Params
from .base import Payload, Task, TaskRequest


class SimilarityInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_sentence: StrictStr
    sentences: Annotated[list[StrictStr], Field(min_length=1), Limit("max_inputs")]


class Parameters(Params):
    truncate: Optional[Flag] = None
    truncation_direction: Optional[Literal["left", "right", "Left", "Right"]] = None
    prompt_name: Optional[StrictStr] = None


class Request(TaskRequest):
    inputs: SimilarityInput
    parameters: Parameters = Parameters()


@register_task("sentence-similarity")
class SentenceSimilarity(Task):
    head = BASE
    loads_architectures = None
    infer_priority = 10
    request_model = Request

    def claims(self, ref) -> bool:
        return ref.sentence_transformers

    def redirect(self, payload: Payload) -> Optional[str]:
        # NOTE(hubserve): clients in URL mode post feature-extraction bodies (a string or
        # a list) to the model's own route; the hosted API embedded them.
        if isinstance(payload.inputs, (str, list)):
            return "feature-extraction"
        return None

    def request_data(self, payload: Payload) -> dict:
        # NOTE(hubserve): huggingface_hub 0.30 sent the fields at the top level with inputs: null.
        inputs = payload.inputs
        if inputs is None and ("source_sentence" in payload.extra or "sentences" in payload.extra):
            inputs = {k: payload.extra.get(k) for k in ("source_sentence", "sentences")}
        return {"inputs": inputs, "parameters": payload.parameters}

    def prepare(self, ref, backend):
        return load_pooling(ref.path)

    def run_one(self, model, request):
        p = request.parameters
        texts = [request.inputs.source_sentence, *request.inputs.sentences]
        vectors = sentence_embeddings(
            model, texts, truncate=p.truncate is not False,
            direction=(p.truncation_direction or "right").lower(), prompt_name=p.prompt_name, normalize=True,
        )
        return [float(x) for x in vectors[1:] @ vectors[0]]
