"""summarization: ``[{summary_text}]``."""

from __future__ import annotations

from . import register_task
from ._generation import Seq2SeqTask


@register_task("summarization")
class Summarization(Seq2SeqTask):
    pipeline = "summarization"
    output_key = "summary_text"
