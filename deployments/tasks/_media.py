"""Decoding of binary inputs in the replica: images through Pillow.

Nothing here runs in the ingress, which hands the raw bytes on. A size bound from
``limits`` is checked on the header, before the pixels are decoded.
"""

from __future__ import annotations

import io
from typing import Any

from hubserve.errors import InvalidInput
from hubserve.media import describe

from ._params import DEFAULT_LIMITS


def open_image(data: bytes, limits: Any = None) -> Any:
    """An RGB ``PIL.Image`` of ``data``, turned upright by its EXIF orientation.

    Raises:
        InvalidInput: for bytes Pillow cannot read (naming what they look like), or an image
            of more pixels than ``limits.max_image_pixels`` (checked before decoding).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    # NOTE(hubserve): limits.max_image_pixels replaces Pillow's own bound (a warning, then an
    # error at twice it), so that the 400 says the image's size and the configured limit.
    Image.MAX_IMAGE_PIXELS = None
    bound = (limits or DEFAULT_LIMITS).max_image_pixels
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidInput(f"Could not decode the input as an image: the body is {describe(data)}") from None
    width, height = image.size
    if width * height > bound:
        raise InvalidInput(f"The image is {width}x{height} pixels, more than this server allows "
                           f"({bound}, limits.max_image_pixels)")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"The {image.format or 'image'} is damaged and cannot be decoded: {exc}") from None
