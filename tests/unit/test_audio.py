"""Audio inputs: every container decoded by ffmpeg in the replica, resampled and mixed down;
long audio refused from limits after decoding no more than the bound; bad bytes named; the
audio tasks' parameters allowlisted and bounded."""

import numpy as np
import pytest

from deployments.tasks import get_task
from deployments.tasks._media import decode_audio
from deployments.tasks.base import Payload
from hubserve.config.limits import LimitsConfig
from hubserve.errors import BackendFailure, InvalidInput
from tests.media import FORMATS, silence, tone
from tests.replica import load
from tests.tiny_models import TINY_MODELS
from tests.unit.test_media import png


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_container_decodes_to_mono_float_at_the_model_rate(fmt):
    for rate in (16000, 8000):
        samples = decode_audio(tone(1.0, fmt), rate)
        assert samples.dtype.name == "float32" and samples.ndim == 1
        # NOTE: mp3 (written to a pipe, so without its gapless header) and opus pad the edges.
        assert abs(samples.size / rate - 1.0) < 0.1, (fmt, rate, samples.size)
        # ffmpeg's sine source has an amplitude of 1/8; the resampled tone is still 440 Hz.
        assert 0.1 < abs(samples).max() <= 1.0
        spectrum = np.abs(np.fft.rfft(samples))
        assert abs(np.argmax(spectrum) * rate / samples.size - 440) < 5


def test_an_hour_of_audio_is_refused_from_limits():
    hour = silence(3600.0)
    assert len(hour) < 2_000_000  # small enough to pass the body limit: only the bound stops it
    with pytest.raises(InvalidInput, match=r"longer than this server allows \(600s, limits.max_audio_seconds\)"):
        decode_audio(hour, 16000)
    with pytest.raises(InvalidInput, match=r"\(2s, limits.max_audio_seconds\)"):
        decode_audio(tone(3.0), 16000, LimitsConfig(max_audio_seconds=2))
    assert decode_audio(tone(1.5), 16000, LimitsConfig(max_audio_seconds=2)).size == 24000


def test_decoding_past_the_ffmpeg_time_bound_is_a_400_naming_it():
    with pytest.raises(InvalidInput, match="limits.ffmpeg_timeout_s"):
        decode_audio(tone(1.0), 16000, LimitsConfig(ffmpeg_timeout_s=1e-6))


@pytest.mark.parametrize("body, named", [
    (png(), "image/png"),
    (b"hello, this is text", "text"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 28, "audio/wav"),
    (bytes(range(256)) * 4, "unrecognised format"),
])
def test_undecodable_bytes_are_named(body, named):
    with pytest.raises(InvalidInput, match="Could not decode the input as audio") as err:
        decode_audio(body, 16000)
    assert named in err.value.message


@pytest.mark.parametrize("target", ["file", "http://169.254.169.254/latest/clip.mp3"])
def test_a_playlist_naming_other_files_or_urls_is_not_followed(tmp_path, target):
    """An HLS playlist probes as a container; followed, it would read the server's own files."""
    secret = tmp_path / "secret.mp3"
    secret.write_bytes(tone(1.0, "mp3"))
    url = secret.as_uri() if target == "file" else target
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{url}\n#EXT-X-ENDLIST\n".encode()
    with pytest.raises(InvalidInput, match="Could not decode the input as audio"):
        decode_audio(playlist, 16000)
    assert decode_audio(secret.read_bytes(), 16000).size > 0  # the file itself decodes


def test_a_missing_ffmpeg_is_said_plainly(monkeypatch):
    monkeypatch.setattr("deployments.tasks._media.shutil.which", lambda name: None)
    with pytest.raises(BackendFailure, match="ffmpeg is not installed"):
        decode_audio(tone(), 16000)


def parse(task: str, parameters: dict, limits=None):
    return get_task(task).parse(Payload(inputs=b"audio", parameters=parameters), limits)


def test_speech_recognition_parameters_are_allowlisted_and_bounded():
    request = parse("automatic-speech-recognition",
                    {"return_timestamps": True, "generation_parameters": {"max_new_tokens": 20, "num_beams": 2}})
    assert request.parameters.generation_parameters.known() == {"max_new_tokens": 20, "num_beams": 2}
    assert request.characters() == -1
    with pytest.raises(InvalidInput, match="model_kwargs"):
        parse("automatic-speech-recognition", {"generation_parameters": {"custom_generate": "evil/repo"}})
    with pytest.raises(InvalidInput, match="model_kwargs"):
        parse("automatic-speech-recognition", {"generation_parameters": {"penalty_alpha": 0.6}})
    with pytest.raises(InvalidInput, match="limits.max_new_tokens"):
        parse("automatic-speech-recognition", {"generation_parameters": {"max_new_tokens": 10_000}})
    with pytest.raises(InvalidInput, match="limits.max_num_beams"):
        parse("automatic-speech-recognition", {"generate_kwargs": {"num_beams": 3}}, LimitsConfig(max_num_beams=2))
    with pytest.raises(InvalidInput, match="return_timestamps"):
        parse("automatic-speech-recognition", {"return_timestamps": "yes please"})


def test_audio_classification_parameters():
    assert parse("audio-classification", {"top_k": 2}).parameters.top_k == 2
    with pytest.raises(InvalidInput, match="function_to_apply"):
        parse("audio-classification", {"function_to_apply": "exp"})
    with pytest.raises(InvalidInput, match="model_kwargs"):
        parse("audio-classification", {"chunk_length_s": 10})


@pytest.fixture(scope="module")
def speaker(tiny_store, tmp_path_factory):
    model_id = TINY_MODELS["text-to-speech"][0]
    return load(tiny_store / model_id, model_id, "text-to-speech", tmp_path_factory.mktemp("tts"))


MAGIC = {"audio/flac": b"fLaC", "audio/wav": b"RIFF", "audio/ogg": b"OggS", "audio/mpeg": b"ID3",
         "audio/webm": b"\x1aE\xdf\xa3"}


def speak(task, model, text="hello world", media_type=None, **parameters) -> bytes:
    request = task.parse(Payload(inputs=text, parameters=parameters))
    request.media_type = media_type
    (out,) = task.run(model, [request])
    if isinstance(out, BaseException):
        raise out
    return out


def test_speech_is_encoded_in_every_offered_format(speaker):
    task, model = speaker
    assert task.media_types[0] == "audio/flac" and set(task.media_types) == set(MAGIC)
    for media_type in task.media_types:
        data = speak(task, model, media_type=media_type)
        assert data.startswith(MAGIC[media_type]), media_type
        samples = decode_audio(data, 16000)
        assert samples.size > 1000, media_type  # about 0.05 s or more of sound per letter pair
    assert speak(task, model).startswith(b"fLaC")  # no Accept: flac


def test_speech_is_repeatable_by_seed_and_refuses_generation_parameters_on_vits(speaker):
    task, model = speaker
    first, again = speak(task, model, media_type="audio/wav"), speak(task, model, media_type="audio/wav")
    assert first == again
    assert speak(task, model, media_type="audio/wav", seed=7) != first
    for parameters in ({"temperature": 0.5}, {"generation_parameters": {"max_new_tokens": 5}}):
        with pytest.raises(InvalidInput, match="speaks in one pass"):
            speak(task, model, **parameters)
    with pytest.raises(InvalidInput, match=r"not used by the model: \['custom_generate'\]"):
        speak(task, model, custom_generate="evil/repo")
