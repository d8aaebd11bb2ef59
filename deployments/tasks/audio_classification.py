"""audio-classification: ``[{label, score}, ...]`` for one audio file (flat, like images).

The body is the audio itself (wav, flac, mp3, ogg/opus, webm...; any content type), or JSON
with base64 ``inputs`` (or the legacy ``audio`` field). The replica decodes it with ffmpeg
at the feature extractor's rate (``_media.decode_audio``).
"""

from __future__ import annotations

from deployments.backends.base import Head

from . import register_task
from ._binary import AudioTask, ClassifierRequest, classify

#: Model types whose ``...ForSequenceClassification`` heads classify audio, not text.
AUDIO_ENCODERS = frozenset({"wav2vec2", "wav2vec2-bert", "wav2vec2-conformer", "hubert", "wavlm",
                            "data2vec-audio", "unispeech", "unispeech-sat", "sew", "sew-d"})


@register_task("audio-classification")
class AudioClassification(AudioTask):
    head = Head("audio-classification", "AutoModelForAudioClassification", onnx="encoder")
    pipeline = "audio-classification"
    native_architectures = ("ForAudioClassification",)
    loads_architectures = ("ForAudioClassification", "ForSequenceClassification")
    infer_priority = 15
    request_model = ClassifierRequest

    def claims(self, ref) -> bool:
        return super().claims(ref) or (ref.model_type in AUDIO_ENCODERS and any(
            a.endswith("ForSequenceClassification") for a in ref.architectures))

    def run(self, model, requests):
        return classify(model, requests, lambda req: self.audio(model, req))
