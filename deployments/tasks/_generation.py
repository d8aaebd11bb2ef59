"""What the generation tasks share: parameters, sampling rules and the seq2seq task."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import StrictBool, model_validator

from hubserve.errors import InvalidInput

from ._params import (
    GenLength,
    MaxNewTokens,
    MaxTime,
    NonNegativeInt,
    NumReturnSequences,
    Params,
    PositiveInt,
    RepetitionPenalty,
    Temperature,
    TextOrTexts,
    TopK,
    TopP,
    as_list,
)
from .base import Task, TaskRequest

#: The length of a generation when a request sets none (these models run on CPUs).
DEFAULT_MAX_NEW_TOKENS = 20


def unused_kwargs_message(names: list[str]) -> str:
    """The exact 400 text (transformers' own) that huggingface_hub's client retries on."""
    return (
        f"The following `model_kwargs` are not used by the model: {list(names)} "
        "(note: typos in the generate arguments will also show up in this list)"
    )


class GenerationParameters(Params):
    """The legacy transformers generation parameters (AIC ``TextGenerationParamsCheck``).

    Keys not declared here are passed on to ``generate``, which names unknown
    ones in the "model_kwargs are not used" error the Python client retries on.
    """

    min_length: Optional[GenLength] = None
    max_length: Optional[GenLength] = None
    max_new_tokens: Optional[MaxNewTokens] = None
    top_k: Optional[TopK] = None
    top_p: Optional[TopP] = None
    temperature: Optional[Temperature] = None
    repetition_penalty: Optional[RepetitionPenalty] = None
    max_time: Optional[MaxTime] = None
    num_return_sequences: Optional[NumReturnSequences] = None
    num_beams: Optional[PositiveInt] = None
    do_sample: Optional[StrictBool] = None
    seed: Optional[NonNegativeInt] = None

    @model_validator(mode="after")
    def _check(self):
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError("min_length cannot be larger than max_length")
        n = self.num_return_sequences or 1
        if n > 1 and not self.sampling() and (self.num_beams or 1) < n:
            raise ValueError(
                "num_return_sequences > 1 needs do_sample=true or num_beams >= num_return_sequences"
            )
        if self.sampling() and self.temperature == 0:
            raise ValueError("temperature must be strictly positive when sampling")
        return self

    def sampling(self) -> bool:
        """Whether this request samples (``do_sample``)."""
        return bool(self.do_sample)

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``generate``: declared ones, then unknown ones as sent."""
        kwargs = {k: v for k, v in self.known().items() if k in GenerationParameters.model_fields}
        if self.max_new_tokens is None:
            # NOTE(hubserve): an explicit None stops pipeline defaults from overriding max_length.
            kwargs["max_new_tokens"] = None if self.max_length is not None else DEFAULT_MAX_NEW_TOKENS
        kwargs["do_sample"] = self.sampling()
        kwargs.update(self.model_extra or {})
        return kwargs


class Seq2SeqParameters(GenerationParameters):
    """Adds the DOCS-2025 fields of summarization, translation and text2text."""

    clean_up_tokenization_spaces: Optional[StrictBool] = None
    truncation: Optional[Literal["do_not_truncate", "longest_first", "only_first", "only_second"]] = None
    generate_parameters: Optional[dict[str, Any]] = None

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the transformers pipeline call."""
        kwargs = self.generate_kwargs()
        for key in ("clean_up_tokenization_spaces", "truncation", "generate_parameters"):
            kwargs.pop(key, None)
        kwargs.update(self.generate_parameters or {})
        if self.clean_up_tokenization_spaces is not None:
            kwargs["clean_up_tokenization_spaces"] = self.clean_up_tokenization_spaces
        if self.truncation is not None:
            kwargs["truncation"] = self.truncation
        return kwargs


class Seq2SeqRequest(TaskRequest):
    inputs: TextOrTexts
    parameters: Seq2SeqParameters = Seq2SeqParameters()


class Seq2SeqTask(Task):
    """summarization, translation and text2text-generation: ``[{<output_key>: str}]``.

    The answer is a list with one object per input and returned sequence.
    """

    output_key: ClassVar[str]
    model_kind = "seq2seq-lm"
    loads_architectures = ("ForConditionalGeneration", "MTModel")
    forwards_unknown_parameters = True
    completions = True
    request_model = Seq2SeqRequest

    def run_one(self, model, request):
        texts, is_list = as_list(request.inputs)
        kwargs = request.parameters.pipeline_kwargs()
        rows = model.backend.forward(texts, **kwargs)
        out = []
        for row in rows:
            for item in row if isinstance(row, list) else [row]:
                text = next(iter(item.values())) if isinstance(item, dict) else str(item)
                out.append({self.output_key: text})
        if not out:
            raise InvalidInput("the model produced no output for this input")
        return out

    def cacheable(self, request) -> bool:
        return not request.parameters.sampling() or request.parameters.seed is not None
