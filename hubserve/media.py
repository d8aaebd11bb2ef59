"""What a binary body holds, told from its first bytes (no decoding), for clear errors."""

from __future__ import annotations

from typing import Optional

#: (offset, magic bytes, what they mean), checked in order.
_SIGNATURES = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
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
