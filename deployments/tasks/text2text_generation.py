"""text2text-generation: ``[{generated_text}]``; the default task of encoder-decoder models."""

from __future__ import annotations

from . import register_task
from ._generation import Seq2SeqTask


@register_task("text2text-generation")
class Text2TextGeneration(Seq2SeqTask):
    output_key = "generated_text"
    native_architectures = ("ForConditionalGeneration", "MTModel")
    infer_priority = 40
