"""Constrained types shared by the task schemas (as AIC's ``validation.py``)."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Number = Union[StrictInt, StrictFloat]

TopK = Annotated[StrictInt, Field(ge=1)]
TopP = Annotated[Number, Field(ge=0, le=1)]
Temperature = Annotated[Number, Field(ge=0, le=100)]
RepetitionPenalty = Annotated[Number, Field(ge=0, le=100)]
MaxTime = Annotated[Number, Field(ge=0, le=120)]
NumReturnSequences = Annotated[StrictInt, Field(ge=1, le=10)]
GenLength = Annotated[StrictInt, Field(ge=1, le=500)]
MaxNewTokens = Annotated[StrictInt, Field(ge=0, le=1024)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Text = StrictStr
Flag = StrictBool

#: ``str`` or a non-empty list of ``str``.
TextOrTexts = Union[StrictStr, Annotated[list[StrictStr], Field(min_length=1, max_length=256)]]


class Params(BaseModel):
    """Base of every ``parameters`` model.

    Unknown keys are kept (in ``model_extra``) and logged by the task rather than
    refused, as vLLM does; generation tasks hand them to ``generate`` instead.
    """

    model_config = ConfigDict(extra="allow")

    def known(self) -> dict[str, Any]:
        """The declared parameters that were set."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k not in (self.model_extra or {})}


def as_list(inputs: Any) -> tuple[list, bool]:
    """``(items, was_list)`` for an ``inputs`` value that may be one item or a list."""
    if isinstance(inputs, list):
        return list(inputs), True
    return [inputs], False
