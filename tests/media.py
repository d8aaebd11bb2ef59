"""Audio and image inputs made on the spot with ffmpeg and espeak-ng (``make setup`` installs them)."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

DATA = Path(__file__).parent / "data"

#: ffmpeg's muxer and codec for each container the tests send.
FORMATS = {
    "wav": ("wav", "pcm_s16le"),
    "flac": ("flac", "flac"),
    "mp3": ("mp3", "libmp3lame"),
    "ogg": ("ogg", "libopus"),
    "webm": ("webm", "libopus"),
}


def _encode(source_args: list[str], fmt: str, rate: int = 16000) -> bytes:
    muxer, codec = FORMATS[fmt]
    # NOTE: opus encodes at 48 kHz (and the decoder resamples back).
    out_rate = 48000 if codec == "libopus" else rate
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *source_args, "-ac", "1",
               "-ar", str(out_rate), "-c:a", codec, "-f", muxer, "-"]
    return subprocess.run(command, capture_output=True, check=True).stdout


@functools.lru_cache(maxsize=None)
def tone(seconds: float = 1.0, fmt: str = "wav", frequency: int = 440) -> bytes:
    """A sine tone of ``seconds`` in ``fmt``."""
    return _encode(["-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}"], fmt)


@functools.lru_cache(maxsize=None)
def silence(seconds: float, fmt: str = "flac") -> bytes:
    """``seconds`` of silence (an hour of it is a few hundred kilobytes of flac)."""
    return _encode(["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(seconds)], fmt)


@functools.lru_cache(maxsize=None)
def speech(text: str, fmt: str = "wav") -> bytes:
    """``text`` spoken by espeak-ng, in ``fmt``."""
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True,
                       capture_output=True)
        return _encode(["-i", str(wav)], fmt)
