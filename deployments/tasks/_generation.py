"""What the generation tasks share: parameters, sampling rules and the seq2seq task."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import StrictBool, model_validator

from hubserve.errors import InvalidInput

from ._heads import SEQ2SEQ_LM
from ._params import (
    Flag,
    GenLength,
    MaxNewTokens,
    MaxTime,
    NumBeams,
    NumReturnSequences,
    Params,
    RepetitionPenalty,
    Seed,
    Temperature,
    TextOrTexts,
    TopK,
    TopP,
    as_list,
)
from .base import Task, TaskRequest

#: The length of a generation when a request sets none (these models run on CPUs).
DEFAULT_MAX_NEW_TOKENS = 20


class GenerationParameters(Params):
    """The legacy transformers generation parameters (AIC ``TextGenerationParamsCheck``).

    These fields are the whole of what a request may hand to ``generate``: an unknown
    key is named in the "model_kwargs are not used" 400 (the Python client drops it and
    retries), so nothing like ``custom_generate`` or ``trust_remote_code`` ever reaches
    the model. Every size is bounded by ``limits.*``.
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
    num_beams: Optional[NumBeams] = None
    do_sample: Optional[StrictBool] = None
    seed: Optional[Seed] = None

    #: Fields of this model that ``generate`` takes as they are.
    GENERATE_FIELDS: ClassVar[tuple[str, ...]] = (
        "min_length", "max_length", "max_new_tokens", "top_k", "top_p", "temperature", "repetition_penalty",
        "max_time", "num_return_sequences", "num_beams", "do_sample", "seed",
    )

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
        """Keyword arguments for ``generate``: the allowlisted fields that were set."""
        kwargs = {k: getattr(self, k) for k in self.GENERATE_FIELDS if getattr(self, k) is not None}
        if self.max_new_tokens is None:
            # NOTE(hubserve): an explicit None stops pipeline defaults from overriding max_length.
            kwargs["max_new_tokens"] = None if self.max_length is not None else DEFAULT_MAX_NEW_TOKENS
        kwargs["do_sample"] = self.sampling()
        return kwargs


class GenerateParameters(Params):
    """DOCS-2025 ``generate_parameters`` of summarization, translation and text2text.

    Left out on purpose: ``penalty_alpha`` (contrastive search) and ``num_beam_groups``
    (group beam search), which transformers 4.56+ runs from a ``custom_generate`` Hub
    repository, that is, remote code.
    """

    do_sample: Optional[StrictBool] = None
    early_stopping: Optional[Union[StrictBool, Literal["never"]]] = None
    epsilon_cutoff: Optional[TopP] = None
    eta_cutoff: Optional[TopP] = None
    max_length: Optional[GenLength] = None
    max_new_tokens: Optional[MaxNewTokens] = None
    min_length: Optional[GenLength] = None
    min_new_tokens: Optional[MaxNewTokens] = None
    num_beams: Optional[NumBeams] = None
    temperature: Optional[Temperature] = None
    top_k: Optional[TopK] = None
    top_p: Optional[TopP] = None
    typical_p: Optional[TopP] = None
    use_cache: Optional[StrictBool] = None


class GenerationOptions(Params):
    """The ``generation_parameters`` (or the older ``generate_kwargs``) of the tasks that
    generate from an image or audio: summarization's allowlist, nested."""

    generation_parameters: Optional[GenerateParameters] = None
    generate_kwargs: Optional[GenerateParameters] = None

    def generate_options(self) -> dict[str, Any]:
        """The nested generation fields that were set."""
        nested = self.generation_parameters or self.generate_kwargs
        return nested.known() if nested is not None else {}

    def samples(self) -> bool:
        """Whether the answer is drawn at random (and so not cacheable)."""
        return bool(self.generate_options().get("do_sample"))


class Seq2SeqParameters(GenerationParameters):
    """Adds the DOCS-2025 fields of summarization, translation and text2text."""

    clean_up_tokenization_spaces: Optional[Flag] = None
    truncation: Optional[Literal["do_not_truncate", "longest_first", "only_first", "only_second"]] = None
    generate_parameters: Optional[GenerateParameters] = None

    def sampling(self) -> bool:
        nested = self.generate_parameters.do_sample if self.generate_parameters else None
        return bool(self.do_sample if nested is None else nested)

    def generation_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``generate``: the top-level fields, then ``generate_parameters``."""
        kwargs = self.generate_kwargs()
        if self.generate_parameters is not None:
            kwargs.update(self.generate_parameters.known())
        return kwargs

    def pipeline_kwargs(self) -> dict[str, Any]:
        """What the transformers 4 pipeline call took: ``generation_kwargs`` and the tokenizer's options."""
        kwargs = self.generation_kwargs()
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

    The answer is a list with one object per input and returned sequence. Each input is
    tokenized and generated from alone, as transformers 4's pipeline of the task did (the
    pipelines are gone from transformers 5): the model's ``task_specific_params`` of the task
    add their ``prefix`` and generation defaults, under ``PIPELINE_DEFAULTS``.
    """

    output_key: ClassVar[str]
    #: The transformers 4 pipeline's generation defaults (where the model's own leave them unset).
    PIPELINE_DEFAULTS: ClassVar[dict] = {"max_new_tokens": 256, "num_beams": 4}
    head = SEQ2SEQ_LM
    loads_architectures = ("ForConditionalGeneration", "MTModel")
    completions = True
    request_model = Seq2SeqRequest

    def pipeline_task(self, task_specific_params: dict) -> str:
        """The key of ``task_specific_params`` this task reads."""
        return self.name

    def languages(self, parameters: Any, task: str) -> Optional[tuple]:
        """``(src_lang, tgt_lang)`` for a multilingual tokenizer (translation only)."""
        return None

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        """Logs what may be wrong with the lengths of one generation (never refuses it)."""

    def run_one(self, model, request):
        texts, _ = as_list(request.inputs)
        params = request.parameters
        presets = model.backend.generation_presets()
        task = self.pipeline_task(presets["task_specific_params"])
        task_params = dict(presets["task_specific_params"].get(task) or {})
        prefix = task_params.pop("prefix") if "prefix" in task_params else presets["prefix"]
        rows = model.backend.generate_from_text(
            texts, dict(params.generation_kwargs(), deadline=request.deadline), defaults=self.PIPELINE_DEFAULTS,
            task_params=task_params, prefix=prefix or "", truncation=params.truncation,
            translation=self.languages(params, task), clean_up=bool(params.clean_up_tokenization_spaces),
            check=self.check_inputs)
        out = [{self.output_key: text} for row in rows for text in row]
        if not out:
            raise InvalidInput("the model produced no output for this input")
        return out

    def cacheable(self, request) -> bool:
        return not request.parameters.sampling() or request.parameters.seed is not None
