"""summarization: ``[{summary_text}]``."""

from __future__ import annotations

import logging

from . import register_task
from ._generation import Seq2SeqTask

logger = logging.getLogger(__name__)


@register_task("summarization")
class Summarization(Seq2SeqTask):
    output_key = "summary_text"

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        # NOTE(hubserve): transformers 4's summarization pipeline's warnings, word for word.
        if max_length < min_length:
            logger.warning(f"Your min_length={min_length} must be inferior than your max_length={max_length}.")
        if input_length < max_length:
            logger.warning(
                f"Your max_length is set to {max_length}, but your input_length is only {input_length}. Since this is "
                "a summarization task, where outputs shorter than the input are typically wanted, you might "
                f"consider decreasing max_length manually, e.g. summarizer('...', max_length={input_length // 2})"
            )
