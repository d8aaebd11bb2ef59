"""automatic-speech-recognition: ``{"text"}``, plus ``"chunks": [{"text", "timestamps": [start,
end]}]`` with ``return_timestamps``.

The body is the audio itself (wav, flac, mp3, ogg/opus, webm...; any content type), or JSON
with base64 ``inputs`` (or the legacy ``audio`` field). The replica decodes it with ffmpeg at
the feature extractor's rate. Sequence-to-sequence models (Whisper, Speech2Text) and CTC models
(wav2vec2, HuBERT) are both served; audio longer than one window is transcribed in chunks.
"""

from __future__ import annotations

from typing import Optional

from pydantic import StrictBytes

from deployments.backends.base import Head
from hubserve.errors import InvalidInput

from . import register_task
from ._binary import AudioTask
from ._generation import GenerationOptions
from ._params import Flag
from ._pipeline import call_pipeline
from .base import BinaryRequest, Measured

SPEECH_SEQ2SEQ = Head("speech-seq2seq", "AutoModelForSpeechSeq2Seq", onnx="speech-seq2seq", generative=True)
CTC = Head("ctc", "AutoModelForCTC", onnx="encoder")

#: Model types whose ``...ForConditionalGeneration`` transcribes speech.
SPEECH_SEQ2SEQ_TYPES = frozenset({"whisper", "speech_to_text", "speech-encoder-decoder", "moonshine"})
#: Audio longer than this is transcribed in windows of this length (Whisper's window).
CHUNK_S = 30.0


class Parameters(GenerationOptions):
    return_timestamps: Optional[Flag] = None


class Request(BinaryRequest):
    inputs: StrictBytes
    parameters: Parameters = Parameters()


@register_task("automatic-speech-recognition")
class AutomaticSpeechRecognition(AudioTask):
    head = SPEECH_SEQ2SEQ
    preprocessors = ("tokenizer", "feature_extractor")
    pipeline = "automatic-speech-recognition"
    native_architectures = ("ForCTC", "ForSpeechSeq2Seq")
    loads_architectures = ("ForCTC", "ForSpeechSeq2Seq", "ForConditionalGeneration")
    infer_priority = 15
    request_model = Request

    def claims(self, ref) -> bool:
        return super().claims(ref) or (ref.model_type in SPEECH_SEQ2SEQ_TYPES and any(
            a.endswith("ForConditionalGeneration") for a in ref.architectures))

    def head_for(self, ref) -> Head:
        return CTC if any(a.endswith("ForCTC") for a in ref.architectures) else SPEECH_SEQ2SEQ

    def run_one(self, model, request):
        params = request.parameters
        generate_kwargs = params.generate_options()
        ctc = self.head_for(model.ref) is CTC
        if ctc and generate_kwargs:
            raise InvalidInput("generation_parameters apply to sequence-to-sequence models (Whisper); "
                               f"{model.ref.model_id} is a CTC model")
        audio, headers = self.audio(model, request)
        kwargs = {}
        if params.return_timestamps:
            # NOTE(hubserve): CTC pipelines time words (or characters), not segments.
            kwargs["return_timestamps"] = "word" if ctc else True
        if generate_kwargs:
            kwargs["generate_kwargs"] = generate_kwargs
        if audio["raw"].size > CHUNK_S * audio["sampling_rate"]:
            kwargs["chunk_length_s"] = CHUNK_S
        out = call_pipeline(model.backend.forward, audio, **kwargs)
        result = {"text": out["text"]}
        if params.return_timestamps:
            result["chunks"] = [{"text": c["text"], "timestamps": [_seconds(t) for t in c["timestamp"]]}
                                for c in out.get("chunks") or []]
        return Measured(result, headers)

    def cacheable(self, request) -> bool:
        return not request.parameters.samples()


def _seconds(value) -> Optional[float]:
    return None if value is None else round(float(value), 3)
