"""Constrained types shared by the task schemas (as AIC's ``validation.py``).

Ranges that define a value (``top_p`` in 0..1) are written here. Bounds that
protect the server (how many tokens, beams, labels...) come from ``limits.*`` of
the config: a field annotated with ``Limit("max_num_beams")`` is checked against
the limits passed as validation context (``validate(model, data, limits)``), and
its 400 names the field and the limit.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
)

from hubserve.config.limits import LimitsConfig

Number = Union[StrictInt, StrictFloat]
DEFAULT_LIMITS = LimitsConfig()


def limits_of(info: Optional[ValidationInfo]) -> LimitsConfig:
    """The limits a validation runs under (the config's, else the defaults)."""
    context = info.context if info is not None else None
    return (context or {}).get("limits") or DEFAULT_LIMITS


def Limit(name: str, *, each: Optional[str] = None) -> AfterValidator:
    """Checks a number (or a list's length) against ``limits.<name>``, and each string
    of a list against ``limits.<each>``."""
    if name not in LimitsConfig.model_fields or (each and each not in LimitsConfig.model_fields):
        raise ValueError(f"no limit named {name!r}")

    def check(value: Any, info: ValidationInfo) -> Any:
        limits = limits_of(info)
        field = info.field_name or "value"
        items = [value] if isinstance(value, str) else value
        size = len(items) if isinstance(items, list) else value
        bound = getattr(limits, name)
        if isinstance(size, (int, float)) and size > bound:
            amount = f"has {size} items" if isinstance(items, list) else f"is {size}"
            raise ValueError(f"`{field}` {amount}, more than this server allows ({bound}, limits.{name})")
        if each and isinstance(items, list):
            longest = max((len(s) for s in items if isinstance(s, str)), default=0)
            if longest > getattr(limits, each):
                raise ValueError(f"`{field}` holds a string of {longest} characters, more than this server "
                                 f"allows ({getattr(limits, each)}, limits.{each})")
        return value

    return AfterValidator(check)


TopK = Annotated[StrictInt, Field(ge=1), Limit("max_top_k")]

def _candidate_labels(value: Union[str, list[str]], info: ValidationInfo) -> list[str]:
    labels = [s.strip() for s in (value.split(",") if isinstance(value, str) else value)]
    labels = [s for s in labels if s]
    if not labels:
        raise ValueError("at least one candidate label is required")
    bound = limits_of(info).max_candidate_labels
    if len(labels) > bound:
        raise ValueError(f"`candidate_labels` has {len(labels)} items, more than this server allows "
                         f"({bound}, limits.max_candidate_labels)")
    return labels


def _hypothesis_template(value: str) -> str:
    if "{}" not in value:
        raise ValueError("hypothesis_template must contain {} where the label goes")
    return value


def with_candidate_labels(parameters: dict) -> dict:
    """``parameters`` with the JS client's ``candidateLabels`` under its own name."""
    params = dict(parameters)
    if "candidateLabels" in params and "candidate_labels" not in params:
        params["candidate_labels"] = params.pop("candidateLabels")
    return params


#: A list of labels, or one comma-separated string of them (the legacy form), as a list.
CandidateLabels = Annotated[Union[StrictStr, list[StrictStr]], AfterValidator(_candidate_labels)]
#: The sentence a label is put into (``This example is {}.``).
HypothesisTemplate = Annotated[StrictStr, AfterValidator(_hypothesis_template)]
#: A probability (a threshold, ``top_p``).
Probability = Annotated[Number, Field(ge=0, le=1)]
TopP = Probability
Temperature = Annotated[Number, Field(ge=0, le=100)]
RepetitionPenalty = Annotated[Number, Field(ge=0, le=100)]
MaxTime = Annotated[Number, Field(ge=0, le=120)]
NumReturnSequences = Annotated[StrictInt, Field(ge=1), Limit("max_return_sequences")]
NumBeams = Annotated[StrictInt, Field(ge=1), Limit("max_num_beams")]
GenLength = Annotated[StrictInt, Field(ge=1), Limit("max_new_tokens")]
MaxNewTokens = Annotated[StrictInt, Field(ge=0), Limit("max_new_tokens")]
Seed = Annotated[StrictInt, Field(ge=0, le=2**64 - 1)]
Stop = Annotated[Union[StrictStr, list[StrictStr]], Limit("max_stop_sequences", each="max_stop_chars")]
QATokens = Annotated[StrictInt, Field(ge=1), Limit("max_question_answering_tokens")]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Text = StrictStr
Flag = StrictBool

#: ``str`` or a non-empty list of ``str`` (its length is checked against ``limits.max_inputs``
#: before parsing, for every task).
TextOrTexts = Union[StrictStr, Annotated[list[StrictStr], Field(min_length=1)]]


class Params(BaseModel):
    """Base of every ``parameters`` model.

    Unknown keys are kept (in ``model_extra``) so that ``Task.parse`` can name them in
    the hosted API's "model_kwargs are not used" 400; nothing undeclared ever reaches
    a model call.
    """

    model_config = ConfigDict(extra="allow")

    def known(self) -> dict[str, Any]:
        """The declared parameters that were set."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k in type(self).model_fields}


def as_list(inputs: Any) -> tuple[list, bool]:
    """``(items, was_list)`` for an ``inputs`` value that may be one item or a list."""
    if isinstance(inputs, list):
        return list(inputs), True
    return [inputs], False
