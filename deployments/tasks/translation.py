"""translation: ``[{translation_text}]``; ``src_lang`` and ``tgt_lang`` come together."""

from __future__ import annotations

from typing import Optional

from pydantic import StrictStr, model_validator

from . import register_task
from ._generation import Seq2SeqParameters, Seq2SeqRequest, Seq2SeqTask
from ._params import TextOrTexts


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
    pipeline = "translation"
    output_key = "translation_text"
    request_model = Request
