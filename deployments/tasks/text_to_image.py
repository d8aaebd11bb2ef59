"""text-to-image: the drawn image as a file, ``image/jpeg`` unless ``Accept`` asks for
``image/png`` or ``image/webp`` (the Python client asks for png).

The body is ``{"inputs": str, "parameters": {"negative_prompt", "height", "width",
"num_inference_steps", "guidance_scale", "seed", "target_size": {"width", "height"}}}`` or the
prompt itself. Diffusers pipelines (Stable Diffusion and its kin) on PyTorch, the GPU when the
model's deployment has one. Steps and size are bounded by ``limits``; ``seed`` (0 unless
given) makes a drawing repeatable, and so cacheable.
"""

from __future__ import annotations

import io
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationInfo, model_validator

from deployments.backends.base import Head
from hubserve.errors import InvalidInput

from . import register_task
from ._params import DEFAULT_LIMITS, Limit, Number, Params, Seed, limits_of
from .base import MediaRequest, Payload, Task, prompt_data

#: The image formats an answer may take (default first): Pillow's name for each.
IMAGE_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
#: Sides are multiples of this (the VAE's scale; diffusers rounds down otherwise).
SIDE_STEP = 8
Side = Annotated[StrictInt, Field(ge=SIDE_STEP, le=8192, multiple_of=SIDE_STEP)]


class TargetSize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: Annotated[StrictInt, Field(ge=1, le=8192)]
    height: Annotated[StrictInt, Field(ge=1, le=8192)]


class Parameters(Params):
    negative_prompt: Optional[StrictStr] = None
    height: Optional[Side] = None
    width: Optional[Side] = None
    num_inference_steps: Optional[Annotated[StrictInt, Field(ge=1), Limit("max_inference_steps")]] = None
    guidance_scale: Optional[Annotated[Number, Field(ge=0, le=50)]] = None
    seed: Optional[Seed] = None
    #: The size the image is resized to after drawing.
    target_size: Optional[TargetSize] = None

    @model_validator(mode="after")
    def _bounded(self, info: ValidationInfo):
        bound = limits_of(info).max_output_pixels
        for what, size in (("height x width", (self.height, self.width)),
                           ("target_size", (self.target_size.height, self.target_size.width) if self.target_size else None)):
            if size and None not in size and size[0] * size[1] > bound:
                raise ValueError(f"{what} is {size[0] * size[1]} pixels, more than this server allows "
                                 f"({bound}, limits.max_output_pixels)")
        return self


class Request(MediaRequest):
    inputs: StrictStr = Field(min_length=1)
    parameters: Parameters = Parameters()


def encode_image(image, media_type: str) -> bytes:
    """A PIL image as a file of ``media_type`` (``IMAGE_FORMATS``)."""
    buffer = io.BytesIO()
    fmt = IMAGE_FORMATS[media_type]
    image.convert("RGB").save(buffer, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


@register_task("text-to-image")
class TextToImage(Task):
    head = Head("text-to-image", "DiffusionPipeline", library="diffusers")
    preprocessors = ()
    native_architectures = ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "PixArtAlphaPipeline",
                            "StableDiffusion3Pipeline", "FluxPipeline", "LatentConsistencyModelPipeline")
    loads_architectures = native_architectures
    infer_priority = 10
    request_model = Request
    media_types = tuple(IMAGE_FORMATS)

    def request_data(self, payload: Payload) -> dict:
        return prompt_data(payload)

    def run_one(self, model, request):
        params = request.parameters
        side = model.backend.default_size()
        height, width = params.height or side, params.width or side
        bound = (request.limits or DEFAULT_LIMITS).max_output_pixels
        if height * width > bound:
            raise InvalidInput(f"The model draws {width}x{height} images unless asked otherwise, more than this "
                               f"server allows ({bound} pixels, limits.max_output_pixels): set width and height")
        options = {"height": height, "width": width}
        for key in ("negative_prompt", "num_inference_steps", "guidance_scale"):
            if getattr(params, key) is not None:
                options[key] = getattr(params, key)
        image = model.backend.forward(request.inputs, seed=params.seed or 0, deadline=request.deadline, **options)
        if params.target_size:
            from PIL import Image

            image = image.resize((params.target_size.width, params.target_size.height), Image.Resampling.LANCZOS)
        return encode_image(image, request.media_type or self.media_types[0])
