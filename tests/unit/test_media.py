"""Binary bodies (images): every body form the ingress accepts, and decoding in the replica:
EXIF orientation, decompression bombs refused on the header, undecodable bytes named."""

import base64
import io
import struct
import time
import zlib

import pytest
from PIL import Image

from deployments.tasks import get_task
from deployments.tasks._media import open_image
from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput
from hubserve.media import describe, negotiate, sniff
from deployments.payloads import decode_binary_body


def png(width: int = 40, height: int = 20, color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header (valid CRC) claims ``width`` x ``height`` and holds one tiny row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 7)) + _chunk(b"IEND", b"")


def blank_png(width: int, height: int) -> bytes:
    """A whole, valid PNG of one colour (1 bit a pixel), compressed row by row: a few kB for
    a 16000x16000 image, which decodes to 256 MB."""
    row = b"\0" * (1 + (width + 7) // 8)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def icon(*images: tuple[tuple[int, int], bytes]) -> bytes:
    """An ICO file of ``(size its directory claims, image file)`` entries."""
    offset = 6 + 16 * len(images)
    directory, body = b"", b""
    for (width, height), data in images:
        directory += struct.pack("<BBBBHHII", width % 256, height % 256, 0, 0, 1, 32, len(data), offset + len(body))
        body += data
    return struct.pack("<HHH", 0, 1, len(images)) + directory + body


def icon_bombs() -> list[bytes]:
    """ICO files whose directory says 256x256 (or 16x16) around a 16000x16000 PNG: as the
    first (largest claimed) image, which Pillow decodes as it opens the file, and as another."""
    bomb = blank_png(16000, 16000)
    return [icon(((256, 256), bomb)), icon(((32, 32), png(32, 32)), ((16, 16), bomb))]


def test_the_raw_body_is_the_image_whatever_its_content_type():
    data = png()
    for content_type in ("image/png", "application/octet-stream", "", "image/jpeg"):
        payload = decode_binary_body(data, content_type)
        assert payload.inputs == data and payload.parameters == {}


def test_json_bodies_carry_base64_in_inputs_or_the_legacy_field():
    data = png()
    b64 = base64.b64encode(data).decode()
    assert decode_binary_body(f'{{"inputs": "{b64}", "parameters": {{"top_k": 2}}}}'.encode(),
                              "application/json").inputs == data
    assert decode_binary_body(f'{{"image": "{b64}"}}'.encode(), "", legacy_field="image").inputs == data
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    assert decode_binary_body(orjson_dumps({"inputs": f"data:image/png;base64,{wrapped}"}), "").inputs == data
    payload = decode_binary_body(orjson_dumps({"inputs": {"image": b64, "question": "What?"}}), "application/json")
    assert payload.inputs == {"image": data, "question": "What?"}
    assert decode_binary_body(data, "image/png", {"top_k": "2"}).parameters == {"top_k": 2}


def orjson_dumps(value) -> bytes:
    import orjson

    return orjson.dumps(value)


@pytest.mark.parametrize("body, content_type, message", [
    (b"", "image/png", "body is empty"),
    (b'{"inputs": "not base64!!"}', "application/json", "not valid base64"),
    (b'{"inputs": "https://example.com/cat.png"}', "application/json", "fetches nothing"),
    (b'{"parameters": {}}', "application/json", "no `inputs`"),
    (b'{"inputs": 3}', "application/json", "must be base64"),
    (b'{"inputs": ', "application/json", "Malformed JSON"),
    (b'[1, 2]', "application/json", "is an object"),
])
def test_bad_binary_bodies_are_400s(body, content_type, message):
    with pytest.raises(InvalidInput, match=message):
        decode_binary_body(body, content_type, legacy_field="image")


def test_the_task_takes_bytes_and_bounded_parameters():
    task = get_task("image-classification")
    request = task.parse(decode_binary_body(png(), "image/png", {"top_k": "3"}))
    assert request.inputs.startswith(b"\x89PNG") and request.parameters.top_k == 3
    with pytest.raises(InvalidInput, match="max_top_k"):
        task.parse(decode_binary_body(png(), "image/png", {"top_k": "100000"}))
    with pytest.raises(InvalidInput, match="model_kwargs"):
        task.parse(decode_binary_body(png(), "image/png", {"custom_generate": "x/y"}))


def test_exif_orientation_is_applied():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 20), (0, 0, 255)).save(buf, "JPEG", exif=exif)
    image = open_image(buf.getvalue())
    assert image.size == (20, 40) and image.mode == "RGB"
    assert open_image(png(40, 20)).size == (40, 20)


def test_a_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(InvalidInput, match=r"larger than this server allows \(40000000 pixels, limits.max_image_pixels\)"):
        open_image(png_header_claiming(100_000, 100_000))
    with pytest.raises(InvalidInput, match=r"7000x7000 pixels.*limits.max_image_pixels"):
        open_image(png_header_claiming(7000, 7000))
    with pytest.raises(InvalidInput, match="limits.max_image_pixels"):
        open_image(png(40, 20), LimitsConfig(max_image_pixels=799))
    assert open_image(png(40, 20), LimitsConfig(max_image_pixels=800)).size == (40, 20)


class Decoded(Exception):
    pass


def test_an_icon_bomb_is_refused_before_anything_is_decoded(monkeypatch):
    from PIL import ImageFile

    def decode(self):
        raise Decoded()

    bombs = icon_bombs()
    with monkeypatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", decode)
        for bomb in bombs:
            start = time.perf_counter()
            with pytest.raises(InvalidInput, match=r"inside the icon file is 16000x16000 pixels.*max_image_pixels"):
                open_image(bomb)
            assert time.perf_counter() - start < 5
    assert Image.MAX_IMAGE_PIXELS == LimitsConfig().max_image_pixels  # Pillow's own guard stays on
    assert open_image(icon(((32, 32), png(32, 32)))).size == (32, 32)
    bitmap = io.BytesIO()
    Image.new("RGB", (48, 48), (0, 200, 0)).save(bitmap, "ICO", sizes=[(48, 48)], bitmap_format="bmp")
    assert open_image(bitmap.getvalue()).size == (48, 48)
    with pytest.raises(InvalidInput, match="limits.max_image_pixels"):
        open_image(bitmap.getvalue(), LimitsConfig(max_image_pixels=48 * 47))


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "ICO", "AVIF"])
def test_the_formats_users_send_are_read(kind):
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (10, 200, 30)).save(buf, kind, **({"sizes": [(40, 20)]} if kind == "ICO" else {}))
    image = open_image(buf.getvalue())
    assert image.mode == "RGB" and image.size == (40, 20)


def test_formats_that_decode_as_they_open_or_run_other_programs_are_refused():
    icns = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(icns, "ICNS")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    for body in (icns.getvalue(), eps):
        with pytest.raises(InvalidInput, match="this server reads JPEG, PNG"):
            open_image(body)


def test_undecodable_bytes_name_what_they_look_like():
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 28
    with pytest.raises(InvalidInput, match="the body is audio/wav"):
        open_image(wav)
    with pytest.raises(InvalidInput, match="the body is text"):
        open_image(b"hello there")
    with pytest.raises(InvalidInput, match="damaged"):
        open_image(png(400, 300, (1, 2, 3))[:200])


@pytest.mark.parametrize("data, kind", [
    (png(), "image/png"), (b"\xff\xd8\xff\xe0rest", "image/jpeg"), (b"GIF89a...", "image/gif"),
    (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"), (b"fLaC\0\0", "audio/flac"), (b"OggS\0", "audio/ogg"),
    (b"ID3\x04", "audio/mpeg"), (b"\xff\xfb\x90\x00", "audio/mpeg"), (b"\x1aE\xdf\xa3", "video/webm"),
    (b"%PDF-1.7", "application/pdf"), (b"\0\0\0\x18ftypmp42", "video/mp4"), (b"plain", None),
])
def test_sniff(data, kind):
    assert sniff(data) == kind
    assert describe(data) == (kind or "text")


def test_image_requests_have_cache_keys():
    from serve_app.cache import cache_key

    task = get_task("image-classification")
    red, blue = (task.parse(decode_binary_body(png(color=c), "image/png")) for c in ((255, 0, 0), (0, 0, 255)))
    keys = {cache_key("m/x", "sha", task.name, r) for r in (red, blue)}
    assert len(keys) == 2


AUDIO = ("audio/flac", "audio/wav", "audio/ogg", "audio/mpeg")


@pytest.mark.parametrize("accept, chosen", [
    (None, "audio/flac"),
    ("", "audio/flac"),
    ("*/*", "audio/flac"),
    ("audio/*", "audio/flac"),
    ("audio/wav", "audio/wav"),
    ("audio/x-wav", "audio/wav"),
    ("audio/mp3", "audio/mpeg"),
    ("application/json", "audio/flac"),  # accepts none: the default, never a 406
    ("audio/ogg;q=0.5, audio/mpeg;q=0.9, */*;q=0.1", "audio/mpeg"),
    ("audio/*;q=0.9, audio/ogg", "audio/ogg"),
    ("audio/wav;q=0, audio/*", "audio/flac"),
    ("audio/flac;q=0, audio/*", "audio/wav"),
    ("AUDIO/WAV ; Q=1", "audio/wav"),
    ("audio/wav;q=nonsense, audio/ogg", "audio/ogg"),
])
def test_accept_negotiation(accept, chosen):
    assert negotiate(accept, AUDIO) == chosen
