"""text-to-speech: the spoken text as an audio file, ``audio/flac`` unless ``Accept`` asks for
``audio/wav``, ``audio/ogg`` (Vorbis), ``audio/mpeg`` (mp3) or ``audio/webm`` (Opus).

The body is ``{"inputs": str, "parameters": {...}}`` or the text itself. VITS models (MMS-TTS)
speak directly; models that generate (Bark) take the allowlisted generation fields, flat as the
Python client sends them or under ``generation_parameters``. Speech is drawn with noise:
``seed`` (0 unless given) makes it repeatable, and so cacheable.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import Field, StrictStr

from deployments.backends.base import Head
from hubserve.errors import InvalidInput

from . import register_task
from ._generation import GenerateParameters
from ._media import AUDIO_FORMATS, encode_audio
from ._params import Seed
from .base import MediaRequest, Payload, Task, prompt_data


class Parameters(GenerateParameters):
    seed: Optional[Seed] = None
    generation_parameters: Optional[GenerateParameters] = None

    def generate_kwargs(self) -> dict:
        """The generation fields that were set, flat or nested (the nested ones win)."""
        flat = {k: v for k, v in self.known().items() if k in GenerateParameters.model_fields}
        return {**flat, **(self.generation_parameters.known() if self.generation_parameters else {})}


class Request(MediaRequest):
    inputs: StrictStr = Field(min_length=1)
    parameters: Parameters = Parameters()


@register_task("text-to-speech")
class TextToSpeech(Task):
    # NOTE(hubserve): optimum exports no text-to-waveform head: torch only.
    head = Head("text-to-waveform", "AutoModelForTextToWaveform")
    pipeline = "text-to-speech"
    native_architectures = ("VitsModel", "BarkModel")
    loads_architectures = native_architectures
    infer_priority = 15
    request_model = Request
    media_types = tuple(AUDIO_FORMATS)

    def request_data(self, payload: Payload) -> dict:
        return prompt_data(payload)

    def run_one(self, model, request):
        params = request.parameters
        kwargs = {}
        generate_kwargs = params.generate_kwargs()
        if generate_kwargs:
            if not model.backend.can_generate:
                raise InvalidInput(f"Generation parameters apply to models that generate; {model.ref.model_id} "
                                   f"({model.ref.model_type}) speaks in one pass: drop {sorted(generate_kwargs)}")
            kwargs["generate_kwargs"] = generate_kwargs
        out = model.backend.forward(request.inputs, seed=params.seed or 0, **kwargs)
        samples = np.asarray(out["audio"], dtype=np.float32).reshape(-1)
        return encode_audio(samples, int(out["sampling_rate"]), request.media_type or self.media_types[0],
                            request.limits)
