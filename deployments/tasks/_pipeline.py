"""What the tasks that run a transformers pipeline share: its defaults, and its refusals."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from hubserve.errors import InputUnsupported

T = TypeVar("T")

#: The pipelines' own default number of answers (image and audio classification, visual
#: question answering): the five best.
DEFAULT_TOP_K = 5
#: The pipelines' own default length of a generated caption or answer (image-to-text, visual
#: question answering), within ``limits.max_new_tokens``.
PIPELINE_MAX_NEW_TOKENS = 256


def call_pipeline(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``: a backend's pipeline ``forward`` (or a call that runs one).

    Args:
        call: the backend method to run.
        *args: its inputs.
        **kwargs: its keywords (already validated by the task's request model).

    Returns:
        What ``call`` returns.

    Raises:
        InputUnsupported: the pipeline refused the input with its own message. What only the
            loaded model can tell (its processor's subtasks, its tokenizer's table size, its
            generation config's checks) transformers answers with a ``ValueError``; this is
            the one place that reads it, around the pipeline call and nothing else.
    """
    try:
        return call(*args, **kwargs)
    except ValueError as exc:
        raise InputUnsupported(str(exc)) from None
