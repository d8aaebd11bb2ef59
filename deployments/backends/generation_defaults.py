"""A model's own generation defaults, bounded by ``limits`` as a request's values are.

A model's ``generation_config.json``, the generation fields of its ``config.json`` (older
models keep ``num_beams`` and ``max_length`` there, and transformers still reads them) and
the ``task_specific_params`` a pipeline applies are the values of every generation that does
not set them itself. A number past its limit is lowered to the limit and the replica's log
says so: the model still serves, as it would for a request that asked for the limit. Stop
strings past their limits cannot be cut without changing where a generation ends: the
model is refused with a load error naming them.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from hubserve.errors import ModelLoadError

logger = logging.getLogger(__name__)

#: Each generation field that sizes the work, and the limit that bounds it.
BOUNDED = {
    "max_new_tokens": "max_new_tokens",
    "max_length": "max_new_tokens",
    "min_length": "max_new_tokens",
    "min_new_tokens": "max_new_tokens",
    "num_beams": "max_num_beams",
    "num_beam_groups": "max_num_beams",
    "num_return_sequences": "max_return_sequences",
    "top_k": "max_top_k",
}


def _sources(model: Any) -> Iterator[tuple[str, Any]]:
    """``(where, holder)`` of every set of generation defaults of a loaded model."""
    if getattr(model, "generation_config", None) is not None:
        yield "generation_config", model.generation_config
    config = getattr(model, "config", None)
    if config is None:
        return
    yield "config", config
    for name, value in vars(config).items():
        if hasattr(value, "to_dict") and hasattr(value, "model_type"):  # a nested config (decoder, text_config...)
            yield f"config.{name}", value
    for task, params in (getattr(config, "task_specific_params", None) or {}).items():
        if isinstance(params, dict):
            yield f"config.task_specific_params.{task}", params


def _get(holder: Any, field: str) -> Any:
    return holder.get(field) if isinstance(holder, dict) else getattr(holder, field, None)


def _set(holder: Any, field: str, value: Any) -> None:
    if isinstance(holder, dict):
        holder[field] = value
    else:
        setattr(holder, field, value)


def bound_defaults(holder: Any, where: str, limits: Any, model_name: str) -> None:
    """Lowers each number of ``holder`` (a config, generation config or dict of generation
    fields) past its limit to the limit, and refuses stop strings past theirs.

    Raises:
        ModelLoadError: for ``stop_strings`` past ``limits.max_stop_sequences`` or
            ``limits.max_stop_chars``.
    """
    for field, limit in BOUNDED.items():
        value, bound = _get(holder, field), getattr(limits, limit)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > bound:
            logger.warning("%s: its default %s=%s (%s) is lowered to %s (limits.%s)", model_name, field, value, where,
                           bound, limit)
            _set(holder, field, bound)
    beams, sequences = _get(holder, "num_beams"), _get(holder, "num_return_sequences")
    if isinstance(beams, int) and beams > 1 and isinstance(sequences, int) and sequences > beams \
            and not _get(holder, "do_sample"):
        # NOTE(hubserve): beam search returns at most its beams; a lowered num_beams lowers this too.
        _set(holder, "num_return_sequences", beams)
    stops = _get(holder, "stop_strings")
    stops = [stops] if isinstance(stops, str) else stops or []
    if len(stops) > limits.max_stop_sequences or any(len(str(s)) > limits.max_stop_chars for s in stops):
        raise ModelLoadError(f"{model_name} is refused: its default stop_strings ({where}) pass this server's limits "
                             f"({limits.max_stop_sequences} of at most {limits.max_stop_chars} characters, "
                             "limits.max_stop_sequences and limits.max_stop_chars)")


def bound_generation_defaults(model: Any, limits: Any, model_name: str) -> None:
    """Bounds every set of generation defaults a loaded model (torch or ONNX Runtime) holds."""
    for where, holder in _sources(model):
        bound_defaults(holder, where, limits, model_name)
