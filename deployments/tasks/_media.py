"""Decoding of binary inputs in the replica: images through Pillow, audio through ffmpeg.

Nothing here runs in the ingress, which hands the raw bytes on. Size bounds from
``limits`` are checked before the whole input is decoded: an image's pixels on its
header, audio by decoding no more than ``limits.max_audio_seconds`` of it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from typing import Any

import numpy as np

from hubserve.errors import BackendFailure, InvalidInput
from hubserve.media import describe, icon_sizes, sniff
from hubserve.tokens.secret_env import scrubbed

from ._params import DEFAULT_LIMITS


#: The image formats a request may send (Pillow's names): what cameras, phones, browsers and
#: datasets make. Pillow reads many more, some through other programs (EPS runs Ghostscript)
#: or by decoding while they open (ICNS icon sets); those are refused.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "ICO", "AVIF")


def _check_pixels(width: int, height: int, bound: int, what: str = "The image") -> None:
    if width * height > bound:
        raise InvalidInput(f"{what} is {width}x{height} pixels, more than this server allows "
                           f"({bound}, limits.max_image_pixels)")


def _too_large(bound: int, exc: Exception) -> InvalidInput:
    return InvalidInput(f"The image is larger than this server allows ({bound} pixels, limits.max_image_pixels): {exc}")


def open_image(data: bytes, limits: Any = None) -> Any:
    """An RGB ``PIL.Image`` of ``data`` (one of ``IMAGE_FORMATS``), turned upright by its EXIF
    orientation.

    Raises:
        InvalidInput: for bytes Pillow cannot read or of another format (naming what they look
            like), or an image of more pixels than ``limits.max_image_pixels``, checked before
            anything is decoded: on the image's header, and for an icon file on the header of
            each image it holds (Pillow decodes the largest as it opens the file).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    bound = (limits or DEFAULT_LIMITS).max_image_pixels
    # NOTE(hubserve): Pillow's own guard stays on at the limit (it refuses twice the limit, inside
    # its plugins too); the checks here refuse past the limit with the size in the message.
    Image.MAX_IMAGE_PIXELS = bound
    if sniff(data) == "image/x-icon":
        for width, height in icon_sizes(data):
            _check_pixels(width, height, bound, "An image inside the icon file")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_large(bound, exc) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidInput(f"Could not decode the input as an image: the body is {describe(data)} (this server "
                           f"reads {', '.join(IMAGE_FORMATS)})") from None
    _check_pixels(*image.size, bound)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise _too_large(bound, exc) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"The {image.format or 'image'} is damaged and cannot be decoded: {exc}") from None


#: The demuxers ffmpeg may pick for a body: audio containers only. Playlists (HLS, concat...)
#: name other files or URLs, which ffmpeg would then read: the server's own files, or a fetch.
AUDIO_DEMUXERS = "wav,w64,flac,mp3,ogg,matroska,mov,aac,aiff,caf,amr,au"


def _ffmpeg(purpose: str) -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BackendFailure(f"This server cannot {purpose} audio: ffmpeg is not installed (`make setup` installs it)")
    return ffmpeg


def decode_audio(data: bytes, sampling_rate: int, limits: Any = None) -> np.ndarray:
    """Mono float32 samples of ``data`` (wav, flac, mp3, ogg/opus, webm, m4a and the other
    containers of ``AUDIO_DEMUXERS``) at ``sampling_rate``, mixed down and resampled by ffmpeg,
    which reads nothing but the body.

    Raises:
        InvalidInput: for bytes ffmpeg cannot decode (naming what they look like), no sound in
            them, or more than ``limits.max_audio_seconds`` of it (ffmpeg stops just past the
            bound, so an hour of compressed silence costs no more than the bound).
        BackendFailure: when ffmpeg is not installed (``make setup`` installs it).
    """
    ffmpeg = _ffmpeg("decode")
    limits = limits or DEFAULT_LIMITS
    bound, timeout = limits.max_audio_seconds, limits.ffmpeg_timeout_s
    # NOTE(hubserve): a file, not a pipe: some containers (mp4/m4a) keep their index at the end.
    with tempfile.NamedTemporaryFile(prefix="hubserve-audio-") as source:
        source.write(data)
        source.flush()
        command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1",
                   "-protocol_whitelist", "file", "-format_whitelist", AUDIO_DEMUXERS, "-i", source.name, "-map", "0:a:0", "-t", f"{bound + 1.0 / sampling_rate:.6f}",
                   "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "-"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, check=False,
                                  env=scrubbed())
        except subprocess.TimeoutExpired:
            raise InvalidInput(f"Decoding the audio took more than {timeout:g}s (limits.ffmpeg_timeout_s)") from None
    if done.returncode != 0:
        raise InvalidInput(f"Could not decode the input as audio: the body is {describe(data)}")
    samples = np.frombuffer(done.stdout, dtype=np.float32)
    if samples.size == 0:
        raise InvalidInput(f"The audio holds no samples (the body is {describe(data)})")
    if samples.size > bound * sampling_rate:
        raise InvalidInput(f"The audio is longer than this server allows ({bound:g}s, limits.max_audio_seconds)")
    return samples


#: The audio a task may answer in (default first): ffmpeg's muxer and encoder for each.
AUDIO_FORMATS = {
    "audio/flac": ("flac", ["-c:a", "flac"]),
    "audio/wav": ("wav", ["-c:a", "pcm_s16le"]),
    "audio/ogg": ("ogg", ["-c:a", "libvorbis", "-q:a", "5"]),
    "audio/mpeg": ("mp3", ["-c:a", "libmp3lame", "-q:a", "2"]),
    "audio/webm": ("webm", ["-c:a", "libopus", "-b:a", "64k", "-ar", "48000"]),
}


def encode_audio(samples: np.ndarray, sampling_rate: int, media_type: str, limits: Any = None) -> bytes:
    """The mono float ``samples`` at ``sampling_rate`` as a file of ``media_type`` (one of
    ``AUDIO_FORMATS``), encoded by ffmpeg from a pipe to a pipe.

    Raises:
        BackendFailure: when ffmpeg is not installed, or fails.
    """
    ffmpeg = _ffmpeg("encode")
    muxer, codec = AUDIO_FORMATS[media_type]
    pcm = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0).tobytes()
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1", "-protocol_whitelist", "pipe",
               "-f", "f32le", "-ar", str(int(sampling_rate)), "-ac", "1", "-i", "pipe:0", *codec, "-f", muxer, "pipe:1"]
    timeout = (limits or DEFAULT_LIMITS).ffmpeg_timeout_s
    try:
        done = subprocess.run(command, input=pcm, capture_output=True, timeout=timeout, check=False,
                              env=scrubbed())
    except subprocess.TimeoutExpired:
        raise BackendFailure(f"Encoding the audio as {media_type} took longer than {timeout:g}s "
                             "(limits.ffmpeg_timeout_s)") from None
    if done.returncode != 0 or not done.stdout:
        raise BackendFailure(f"Encoding the audio as {media_type} failed: "
                             f"{done.stderr.decode(errors='replace').strip()[-300:]}")
    return done.stdout
