"""text-generation: ``[{generated_text}]`` (plus TGI ``details`` when asked).

Accepts the legacy transformers parameters and the TGI ones the Python client
sends. TGI features this server does not implement, when set to a non-default
value, are named in the "model_kwargs are not used" 400 so that
``InferenceClient.text_generation`` drops them and retries, as it does with the
hosted API.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from pydantic import StrictBool

from . import register_task
from ._heads import CAUSAL_LM
from deployments.backends.base import Generation
from hubserve.errors import InvalidInput

from ._chat import ChatRequest
from ._generation import GenerationParameters
from ._params import PositiveInt, Stop, TextOrTexts, TopP, as_list
from .base import Payload, Task, TaskRequest, unused_kwargs_message, validate

#: TGI parameters without an implementation here, with the value that means "off".
UNSUPPORTED_TGI = {
    "adapter_id": None,
    "best_of": 1,
    "decoder_input_details": False,
    "frequency_penalty": None,
    "grammar": None,
    "top_n_tokens": None,
    "watermark": False,
}


class Parameters(GenerationParameters):
    return_full_text: Optional[StrictBool] = None
    stop: Optional[Stop] = None
    typical_p: Optional[TopP] = None
    details: Optional[StrictBool] = None
    truncate: Optional[PositiveInt] = None
    # Accepted only with their "off" value (the Python client sends them); see ``unsupported``.
    adapter_id: Optional[Any] = None
    best_of: Optional[Any] = None
    decoder_input_details: Optional[Any] = None
    frequency_penalty: Optional[Any] = None
    grammar: Optional[Any] = None
    top_n_tokens: Optional[Any] = None
    watermark: Optional[Any] = None

    def sampling(self) -> bool:
        # NOTE(hubserve): as TGI, a sampling knob turns sampling on unless do_sample says otherwise.
        if self.do_sample is not None:
            return self.do_sample
        return any(
            v is not None for v in (self.top_k, self.top_p, self.typical_p)
        ) or (self.temperature is not None and self.temperature != 1)

    def unsupported(self) -> list[str]:
        """TGI parameters set to something this server cannot do."""
        return [k for k, off in UNSUPPORTED_TGI.items() if getattr(self, k) not in (off, None)]

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs = super().generate_kwargs()
        if self.typical_p is not None:
            kwargs["typical_p"] = self.typical_p
        if self.truncate is not None:
            kwargs["truncate"] = self.truncate
        if self.stop:
            kwargs["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return kwargs


class Request(TaskRequest):
    inputs: TextOrTexts
    parameters: Parameters = Parameters()
    stream: StrictBool = False


@register_task("text-generation")
class TextGeneration(Task):
    head = CAUSAL_LM
    native_architectures = ("ForCausalLM", "LMHeadModel")
    loads_architectures = ("ForCausalLM", "LMHeadModel")
    infer_priority = 30
    completions = True
    request_model = Request

    def request_data(self, payload: Payload) -> dict:
        data = {"inputs": payload.inputs, "parameters": payload.parameters}
        if "stream" in payload.extra:
            data["stream"] = payload.extra["stream"]
        return data

    def parse_chat(self, body: dict, limits: Any = None) -> ChatRequest:
        """Validates an OpenAI chat completion body, and the generation parameters it makes."""
        request = validate(ChatRequest, body, limits)
        bad = request.unsupported()
        if bad:
            raise InvalidInput(f"Not supported by this server: {', '.join(bad)}")
        request._generation = validate(Parameters, request.parameters(), limits)
        return request

    def _resolve(self, model, request) -> tuple[list[str], Parameters]:
        """The prompts and parameters of a text-generation or chat request."""
        if isinstance(request, ChatRequest):
            return [model.backend.chat_prompt(request.template_messages(), request.deadline)], request._generation
        params = request.parameters
        bad = params.unsupported()
        if bad:
            raise InvalidInput(unused_kwargs_message(bad))
        return as_list(request.inputs)[0], params

    def run_one(self, model, request):
        prompts, params = self._resolve(model, request)
        kwargs = dict(params.generate_kwargs(), deadline=request.deadline)
        if isinstance(request, ChatRequest):
            gen = model.backend.generate(prompts[0], kwargs)[0]
            return {"text": gen.text, "finish_reason": gen.finish_reason,
                    "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.generated_tokens}
        out = []
        for prompt in prompts:
            for gen in model.backend.generate(prompt, kwargs, want_tokens=bool(params.details)):
                full = params.return_full_text is not False
                item: dict[str, Any] = {"generated_text": (prompt + gen.text) if full else gen.text}
                if params.details:
                    item["details"] = {
                        "finish_reason": gen.finish_reason,
                        "generated_tokens": gen.generated_tokens,
                        "seed": gen.seed,
                        "prefill": [],
                        "tokens": gen.tokens,
                    }
                out.append(item)
        return out

    def stream(self, model, request) -> Iterator[dict]:
        """TGI stream events: one per token; the last carries ``generated_text`` and ``details``
        (and, for chat, ``prompt_tokens`` in ``details`` for the usage chunk)."""
        if isinstance(request.inputs if isinstance(request, Request) else None, list):
            raise InvalidInput("`stream: true` takes one prompt in `inputs`, not a list")
        prompts, params = self._resolve(model, request)
        if (params.num_return_sequences or 1) > 1 or params.max_new_tokens == 0:
            raise InvalidInput("`stream: true` needs num_return_sequences = 1 and max_new_tokens >= 1")
        held = None
        kwargs = dict(params.generate_kwargs(), deadline=request.deadline)
        for index, event in enumerate(model.backend.stream(prompts[0], kwargs)):
            if isinstance(event, Generation):
                if held is not None:
                    text = event.text if params.return_full_text is False else prompts[0] + event.text
                    details = {"finish_reason": event.finish_reason, "generated_tokens": event.generated_tokens,
                               "seed": event.seed}
                    if isinstance(request, ChatRequest):
                        details["prompt_tokens"] = event.prompt_tokens
                    yield dict(held, generated_text=text, details=details)
                return
            if held is not None:
                yield held
            held = {"index": index, "token": event, "top_tokens": None, "generated_text": None, "details": None}

    def cacheable(self, request) -> bool:
        if isinstance(request, ChatRequest):
            return not request.parameters()["do_sample"] or request.seed is not None
        return not request.parameters.sampling() or request.parameters.seed is not None
