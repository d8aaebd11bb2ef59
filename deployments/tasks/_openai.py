"""The OpenAI adapters of the generation tasks: ``chat.completion`` answers and
``chat.completion.chunk`` streams of text-generation, and ``/v1/completions`` bodies run as the
model's generation task and answered as a ``text_completion``.

The JS client's ``textGeneration`` posts ``{model, prompt, max_tokens, ...}`` to
``/models/{id}/v1/completions`` for text-generation and text2text models and reads
``choices[0].text``. ``model`` may hold a URL and is not checked against the path.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator, Callable, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from hubserve.errors import InvalidInput

from ._params import Seed, Temperature, TopP
from .base import Payload, Task, validate

_FINISH = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}
FINGERPRINT = "hubserve"


def chat_response(output: dict, model: str) -> dict:
    """The non-streaming answer of a chat request."""
    usage = {"prompt_tokens": output["prompt_tokens"], "completion_tokens": output["completion_tokens"]}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": output["text"]},
            "logprobs": None,
            "finish_reason": _FINISH.get(output["finish_reason"], "stop"),
        }],
        "usage": usage,
    }


async def chat_chunks(events: AsyncIterator[dict], model: str, include_usage: bool,
                      encode: Callable[[Any], bytes]) -> AsyncIterator[bytes]:
    """Turns text-generation stream events into chat chunks, ending with ``data: [DONE]``."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": FINGERPRINT}

    def chunk(delta: dict, finish=None, usage=None, choices=True) -> bytes:
        body = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                    if choices else [], usage=usage)
        return b"data: " + encode(body) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for event in events:
        if "error" in event:
            yield b"data: " + encode(event) + b"\n\n"
            return
        details = event.get("details")
        yield chunk({"content": event["token"]["text"]},
                    finish=_FINISH.get(details["finish_reason"], "stop") if details else None)
        if details and include_usage:
            usage = {"prompt_tokens": details["prompt_tokens"], "completion_tokens": details["generated_tokens"],
                     "total_tokens": details["prompt_tokens"] + details["generated_tokens"]}
            yield chunk({}, usage=usage, choices=False)
    yield b"data: [DONE]\n\n"


class CompletionRequest(BaseModel):
    """The OpenAI completions body (unknown keys are ignored). Sizes (``max_tokens``, ``n``,
    ``stop``) are bounded by ``limits.*`` when the task parses the payload made of it."""

    model_config = ConfigDict(extra="allow")

    model: Optional[StrictStr] = None
    prompt: StrictStr
    max_tokens: Optional[StrictInt] = Field(None, ge=0)
    temperature: Optional[Temperature] = None
    top_p: Optional[TopP] = None
    stop: Optional[Union[StrictStr, list[StrictStr]]] = None
    seed: Optional[Seed] = None
    n: StrictInt = Field(1, ge=1)
    stream: StrictBool = False


def completion_payload(task: Task, payload: Payload) -> tuple[Payload, Optional[str]]:
    """The task payload equivalent to a completions body.

    Returns:
        The task's payload and the ``model`` field to echo.

    Raises:
        InvalidInput: when the model's task does not generate text, or the body is bad.
    """
    if not task.completions:
        raise InvalidInput(
            f"/v1/completions serves text-generation and text2text models; this model's task is `{task.name}`"
        )
    body = dict(payload.extra, **({"prompt": payload.inputs} if payload.inputs is not None else {}))
    req = validate(CompletionRequest, body)
    if req.stream:
        raise InvalidInput("`stream: true` is not served on /v1/completions; send `stream: false`")
    params: dict[str, Any] = {
        "max_new_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "seed": req.seed,
        "num_return_sequences": req.n if req.n > 1 else None,
        "do_sample": True if req.n > 1 else None,
    }
    if task.name == "text-generation":
        params.update(stop=req.stop, return_full_text=False, details=True)
    elif req.stop is not None:
        raise InvalidInput(f"`stop` is not supported for {task.name} models")
    params = {k: v for k, v in params.items() if v is not None}
    return Payload(inputs=req.prompt, parameters=params), req.model


def completion_response(output: list[dict], model: Optional[str]) -> dict:
    """The OpenAI ``text_completion`` object of a generation task's output."""
    choices = []
    for i, item in enumerate(output):
        text = item.get("generated_text")
        if text is None:
            text = next((v for v in item.values() if isinstance(v, str)), "")
        reason = _FINISH.get((item.get("details") or {}).get("finish_reason", ""), "length")
        choices.append({"index": i, "text": text, "finish_reason": reason, "logprobs": None})
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model or "",
        "choices": choices,
    }
