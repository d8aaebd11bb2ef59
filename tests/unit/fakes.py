"""A fake backend that implements the backend protocol with canned outputs."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from deployments.backends.base import Backend, Generation, LoadSpec


class FakeBackend:
    """Answers ``forward`` with ``respond(*args, **kwargs)`` and records the calls."""

    compute_type = "cpu"
    mask_token = "[MASK]"
    max_input_tokens = 16
    vocab_size = 100
    sampling_rate = None
    can_generate = False

    def __init__(self, respond: Optional[Callable[..., Any]] = None, hidden: int = 4) -> None:
        self.respond = respond or (lambda *a, **k: None)
        self.hidden = hidden
        self.calls: list[tuple] = []

    def load(self, spec: LoadSpec) -> None:
        self.spec = spec

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.respond(*args, **kwargs)

    def embed(self, texts: Sequence[str], *, truncate: bool, max_length: Optional[int] = None,
              truncation_side: str = "right"):
        self.calls.append((tuple(texts), {"truncate": truncate}))
        lengths = [len(t.split()) + 2 for t in texts]
        width = max(lengths)
        hidden = np.stack([np.full((width, self.hidden), len(t), dtype=np.float32) for t in texts])
        mask = np.array([[1] * n + [0] * (width - n) for n in lengths])
        return hidden, mask

    def generate(self, prompt: str, params: dict, *, want_tokens: bool = False) -> list[Generation]:
        self.calls.append(((prompt,), params))
        n = params.get("num_return_sequences") or 1
        return [Generation(text=" world", finish_reason="length", seed=params.get("seed"), generated_tokens=1,
                           prompt_tokens=len(prompt.split()),
                           tokens=[{"id": 1, "text": " world", "logprob": -0.5, "special": False}] if want_tokens else [])
                for _ in range(n)]

    def stream(self, prompt: str, params: dict):
        self.calls.append(((prompt,), params))
        tokens = [{"id": i, "text": t, "logprob": -0.1, "special": False} for i, t in enumerate([" wor", "ld"])]
        yield from tokens
        yield Generation(text=" world", finish_reason="length", tokens=tokens, seed=params.get("seed"),
                         generated_tokens=len(tokens), prompt_tokens=len(prompt.split()))

    def generation_presets(self) -> dict:
        return {"prefix": None, "task_specific_params": {}}

    def generate_from_text(self, texts: Sequence[str], params: dict, **kwargs) -> list[list[str]]:
        """``respond(texts, **params, **kwargs)``: a list of texts per input."""
        self.calls.append((tuple(texts), {**params, **kwargs}))
        return self.respond(list(texts), **params, **kwargs)

    def generate_from_image(self, images: Sequence[Any], params: dict, **kwargs) -> list[list[str]]:
        self.calls.append((tuple(images), {**params, **kwargs}))
        return self.respond(list(images), **params, **kwargs)

    def score_image_text(self, image: Any, text: str) -> list[tuple[str, float]]:
        self.calls.append(((image, text), {}))
        return self.respond(image, text)

    def logits(self, encode: Callable[[Any], Any]):
        """``respond(encode)``: ``(encoded, outputs)`` as the backend's ``logits`` gives them."""
        self.calls.append(((encode,), {}))
        return self.respond(encode)

    def chat_prompt(self, messages: list[dict], deadline=None) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def close(self) -> None:
        pass


class FakeModel:
    """What ``Task.run`` receives in a replica: backend, state and ref."""

    def __init__(self, backend, state=None, ref=None):
        self.backend, self.state, self.ref = backend, state, ref


assert isinstance(FakeBackend(), Backend)
