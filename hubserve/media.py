"""What a binary body holds, told from its bytes without decoding: its kind, for clear
errors, and the real size of each image an icon file holds."""

from __future__ import annotations

import struct
from typing import Iterator, Optional

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ICO_MAGIC = b"\x00\x00\x01\x00"

#: (offset, magic bytes, what they mean), checked in order.
_SIGNATURES = (
    (0, PNG_MAGIC, "image/png"),
    (0, ICO_MAGIC, "image/x-icon"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (4, b"ftyp", "video/mp4"),
)


def sniff(data: bytes) -> Optional[str]:
    """The media type the bytes start like, or None when none is recognised."""
    if data[:4] == b"RIFF" and len(data) >= 12:
        return {b"WAVE": "audio/wav", b"WEBP": "image/webp", b"AVI ": "video/avi"}.get(data[8:12], "application/riff")
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG audio frame header
        return "audio/mpeg"
    for offset, magic, kind in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            return kind
    return None


def icon_sizes(data: bytes) -> Iterator[tuple[int, int]]:
    """``(width, height)`` of each image of an ICO file, read from that image's own header
    (a PNG's IHDR or a bitmap's DIB header), never from the directory, which may say less.
    An entry whose header cannot be read is left out: decoding it fails anyway."""
    count = struct.unpack_from("<H", data, 4)[0] if len(data) >= 6 else 0
    for index in range(count):
        entry = 6 + 16 * index
        if len(data) < entry + 16:
            return
        offset = struct.unpack_from("<I", data, entry + 12)[0]
        head = data[offset:offset + 24]
        if head[:8] == PNG_MAGIC and len(head) == 24:
            yield struct.unpack_from(">II", head, 16)
        elif len(head) >= 12 and struct.unpack_from("<I", head)[0] > 12:
            width, height = struct.unpack_from("<ii", head, 4)
            yield abs(width), abs(height)
        elif len(head) >= 8:
            yield struct.unpack_from("<HH", head, 4)


def describe(data: bytes) -> str:
    """A few words on what the bytes look like, for an error message."""
    if not data:
        return "empty"
    kind = sniff(data)
    if kind:
        return kind
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(data)} bytes of an unrecognised format"
    if text.lstrip().startswith(("{", "[")):
        return "JSON text"
    return "text"


#: Other names clients use for the media types a task answers in.
ALIASES = {
    "audio/x-flac": "audio/flac", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg", "audio/x-mpeg": "audio/mpeg", "audio/vorbis": "audio/ogg", "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg", "image/x-png": "image/png",
}


def negotiate(accept: Optional[str], offered: tuple[str, ...]) -> str:
    """The media type of ``offered`` (default first) that an ``Accept`` header prefers.

    Ranges (``audio/*``, ``*/*``) and q-values count (``q=0`` refuses a type); a header that
    accepts none of them gets the default, as the hosted API answers (it never sends a 406).
    """
    choices = []
    for part in (accept or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        kind = ALIASES.get(fields[0].lower(), fields[0].lower())
        q = 1.0
        for f in fields[1:]:
            if f.lower().startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if kind:
            choices.append((kind, q))
    refused = {kind for kind, q in choices if q <= 0}
    best, best_q = offered[0], -1.0
    for kind, q in choices:
        if q <= 0:
            continue
        if kind.endswith("/*"):
            prefix = "" if kind == "*/*" else kind[:-1]
            match = next((o for o in offered if o.startswith(prefix) and o not in refused), None)
            q -= 0.0001  # a type named beats a range of the same q
        else:
            match = kind if kind in offered else None
        if match is not None and q > best_q:
            best, best_q = match, q
    return best
