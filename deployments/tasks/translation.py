"""translation: ``[{translation_text}]``; ``src_lang`` and ``tgt_lang`` come together.

As transformers 4's translation pipeline: a model whose ``task_specific_params`` hold
``translation_XX_to_YY`` entries (T5) runs with the first of them (its ``prefix``, such as
``translate English to German: ``, and its generation defaults), and a multilingual tokenizer
(NLLB, M2M100, mBART) gets ``src_lang`` and ``tgt_lang``, from the request or else from that key.
"""

from __future__ import annotations

import logging
from typing import Optional

from pydantic import StrictStr, model_validator

from . import register_task
from ._generation import Seq2SeqParameters, Seq2SeqRequest, Seq2SeqTask
from ._params import TextOrTexts

logger = logging.getLogger(__name__)


class Parameters(Seq2SeqParameters):
    src_lang: Optional[StrictStr] = None
    tgt_lang: Optional[StrictStr] = None

    @model_validator(mode="after")
    def _pair(self):
        if (self.src_lang is None) != (self.tgt_lang is None):
            raise ValueError("src_lang and tgt_lang must be given together")
        return self

    def pipeline_kwargs(self):
        kwargs = super().pipeline_kwargs()
        if self.src_lang:
            kwargs.update(src_lang=self.src_lang, tgt_lang=self.tgt_lang)
        return kwargs


class Request(Seq2SeqRequest):
    inputs: TextOrTexts
    parameters: Parameters = Parameters()


@register_task("translation")
class Translation(Seq2SeqTask):
    output_key = "translation_text"
    request_model = Request

    def pipeline_task(self, task_specific_params: dict) -> str:
        return next((key for key in task_specific_params if key.startswith("translation")), self.name)

    def languages(self, parameters: Parameters, task: str) -> tuple:
        if parameters.src_lang is not None or parameters.tgt_lang is not None:
            return parameters.src_lang, parameters.tgt_lang
        items = task.split("_")
        return (items[1], items[3]) if len(items) == 4 else (None, None)

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        # NOTE(hubserve): transformers 4's translation pipeline's warning, word for word.
        if input_length > 0.9 * max_length:
            logger.warning(
                f"Your input_length: {input_length} is bigger than 0.9 * max_length: {max_length}. You might consider "
                "increasing your max_length manually, e.g. translator('...', max_length=400)"
            )
