"""OpenAI ``chat.completion`` answers (and ``chat.completion.chunk`` streams)."""

from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator, Callable

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
