"""image-to-text: ``[{"generated_text": str}]``, a caption of one image.

The body is the image itself (any content type), or JSON with base64 ``inputs`` (or the
legacy ``image`` field) and ``parameters: {"max_new_tokens"?, "generation_parameters"?}``
(the allowlisted generation fields of summarization, bounded by ``limits``).
"""

from __future__ import annotations

from typing import Optional

from pydantic import StrictBytes

from deployments.backends.base import Head

from . import register_task
from ._binary import ImageTask, run_grouped
from ._generation import GenerationOptions
from ._params import DEFAULT_LIMITS, MaxNewTokens
from ._pipeline import PIPELINE_MAX_NEW_TOKENS
from .base import BinaryRequest

# NOTE(hubserve): transformers 5 folded AutoModelForVision2Seq into AutoModelForImageTextToText (whose mapping
# holds VisionEncoderDecoderModel, BLIP, BLIP-2, GIT and Pix2Struct).
VISION2SEQ = Head("vision2seq", "AutoModelForImageTextToText", onnx="vision2seq", generative=True)


class Parameters(GenerationOptions):
    max_new_tokens: Optional[MaxNewTokens] = None


class Request(BinaryRequest):
    inputs: StrictBytes
    parameters: Parameters = Parameters()


@register_task("image-to-text")
class ImageToText(ImageTask):
    head = VISION2SEQ
    preprocessors = ("tokenizer", "image_processor")
    native_architectures = ("VisionEncoderDecoderModel", "BlipForConditionalGeneration",
                            "Blip2ForConditionalGeneration", "Pix2StructForConditionalGeneration")
    loads_architectures = native_architectures
    infer_priority = 15
    request_model = Request

    def run(self, model, requests):
        def kwargs_of(req) -> dict:
            generate_kwargs = req.parameters.generate_options()
            # NOTE(hubserve): the length always goes as max_new_tokens (transformers 4's pipeline
            # set 256 otherwise, over any max_length), which the backend fits to the decoder's
            # position table. max_length counts the decoder's start token.
            max_new_tokens = req.parameters.max_new_tokens or generate_kwargs.pop("max_new_tokens", None)
            max_length = generate_kwargs.pop("max_length", None)
            if max_new_tokens is None:
                max_new_tokens = max(max_length - 1, 1) if max_length else min(
                    PIPELINE_MAX_NEW_TOKENS, (req.limits or DEFAULT_LIMITS).max_new_tokens)
            return {**generate_kwargs, "max_new_tokens": max_new_tokens}

        def caption(images, **kwargs):
            return model.backend.generate_from_image(images, kwargs,
                                                     defaults={"max_new_tokens": PIPELINE_MAX_NEW_TOKENS})

        return run_grouped(model, requests, lambda req: (self.image(req), {}), kwargs_of,
                           lambda texts: [{"generated_text": text} for text in texts], caption)

    def cacheable(self, request) -> bool:
        return not request.parameters.samples()
