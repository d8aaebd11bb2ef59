"""OpenAI chat completion requests for text-generation models.

Served on ``/models/{id}/v1/chat/completions`` (where ``InferenceClient(base_url=...)``
posts) and ``/v1/chat/completions`` with the model id in ``model``. The conversation
is rendered with the model's own chat template.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictInt, StrictStr

from ._params import Limit, Number, Seed, Stop
from .base import TaskRequest

#: OpenAI fields this server cannot honour, with the values that mean "off".
UNSUPPORTED = {
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: StrictStr


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Optional[Union[StrictStr, list[TextPart]]] = None

    def as_template_input(self) -> dict:
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content or ""}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: Optional[StrictBool] = None


class ChatRequest(TaskRequest):
    """``POST .../v1/chat/completions``: the OpenAI body (unknown keys are ignored)."""

    model_config = ConfigDict(extra="allow")

    model: Optional[StrictStr] = None
    messages: Annotated[list[Message], Field(min_length=1), Limit("max_inputs")]
    max_tokens: Optional[Annotated[StrictInt, Field(ge=1), Limit("max_new_tokens")]] = None
    max_completion_tokens: Optional[Annotated[StrictInt, Field(ge=1), Limit("max_new_tokens")]] = None
    temperature: Optional[Number] = Field(None, ge=0, le=2)
    top_p: Optional[Number] = Field(None, ge=0, le=1)
    seed: Optional[Seed] = None
    stop: Optional[Stop] = None
    n: StrictInt = Field(1, ge=1, le=1)
    stream: StrictBool = False
    stream_options: Optional[StreamOptions] = None
    #: The text-generation parameters of this request, set by the task's ``parse_chat``.
    _generation: Any = PrivateAttr(None)

    def unsupported(self) -> list[str]:
        """Fields set to something this server cannot do."""
        extra = self.model_extra or {}
        return sorted(k for k, off in UNSUPPORTED.items() if k in extra and extra[k] not in off)

    def template_messages(self) -> list[dict]:
        return [m.as_template_input() for m in self.messages]

    def parameters(self) -> dict[str, Any]:
        """Text-generation parameters: greedy unless a temperature or top_p asks to sample."""
        sampling = bool(self.temperature) or (self.top_p is not None and self.top_p < 1)
        params: dict[str, Any] = {
            "max_new_tokens": self.max_completion_tokens or self.max_tokens,
            "do_sample": sampling,
            "return_full_text": False,
            "seed": self.seed,
            "stop": self.stop,
        }
        if sampling:
            params.update(temperature=self.temperature, top_p=self.top_p)
        return {k: v for k, v in params.items() if v is not None}

    def characters(self) -> int:
        return sum(len(m.as_template_input()["content"]) for m in self.messages)
