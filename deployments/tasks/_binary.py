"""What the image and audio tasks share: how the ingress reads their bodies, the preprocessor
they load, the compute headers, and decoding in the replica (``_media``)."""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np
from pydantic import StrictBytes

from hubserve.errors import InvalidInput

from ._media import decode_audio, open_image
from ._params import Params, TopK
from .base import BinaryRequest, Measured, Task, TaskRequest

#: The classification pipelines' own default: the five best labels.
DEFAULT_TOP_K = 5


class ClassifierParameters(Params):
    """The ``parameters`` of image- and audio-classification."""

    function_to_apply: Optional[Literal["sigmoid", "softmax", "none"]] = None
    top_k: Optional[TopK] = None


class ClassifierRequest(BinaryRequest):
    """The request of image- and audio-classification: the input's bytes and ``ClassifierParameters``."""

    inputs: StrictBytes
    parameters: ClassifierParameters = ClassifierParameters()


def classify(model: Any, requests: Sequence[TaskRequest],
             decode: Callable[[TaskRequest], tuple[Any, dict[str, str]]]) -> list[Any]:
    """``[{label, score}, ...]`` per request: one pipeline call per distinct parameter set over
    the decoded inputs (``decode`` gives the pipeline input and its compute headers); an input
    that does not decode fails alone."""
    out: list[Any] = [None] * len(requests)
    groups: dict[tuple, list[tuple[int, Any, dict]]] = {}
    for i, req in enumerate(requests):
        try:
            value, headers = decode(req)
        except InvalidInput as exc:
            out[i] = exc
            continue
        key = (req.parameters.function_to_apply, req.parameters.top_k or DEFAULT_TOP_K)
        groups.setdefault(key, []).append((i, value, headers))
    for (fn, top_k), members in groups.items():
        kwargs = {"top_k": top_k, **({"function_to_apply": fn} if fn else {})}
        rows = model.backend.forward([value for _, value, _ in members], **kwargs)
        for (i, _, headers), row in zip(members, rows):
            labels = [{"label": r["label"], "score": float(r["score"])} for r in row]
            out[i] = Measured(labels, headers) if headers else labels
    return out


class ImageTask(Task):
    """A task whose input is one image (raw body, base64 ``inputs`` or the legacy ``image``)."""

    preprocessors = ("image_processor",)
    input_kind = "binary"
    binary_field = "image"

    def compute_headers(self, request: TaskRequest) -> dict[str, str]:
        return {"x-compute-images": "1"}

    @staticmethod
    def image(request: TaskRequest) -> Any:
        """The request's image, decoded (``InvalidInput`` for bytes that are not one)."""
        inputs = request.inputs
        return open_image(inputs["image"] if isinstance(inputs, dict) else inputs, request.limits)


class AudioTask(Task):
    """A task whose input is one audio file (raw body, base64 ``inputs`` or the legacy ``audio``),
    decoded by ffmpeg at the rate of the model's feature extractor."""

    preprocessors = ("feature_extractor",)
    input_kind = "binary"
    binary_field = "audio"

    @staticmethod
    def audio(model: Any, request: TaskRequest) -> tuple[dict, dict[str, str]]:
        """The pipeline input of the request's audio (``{"raw", "sampling_rate"}``) and its
        ``x-compute-audio-length``."""
        rate: Optional[int] = model.backend.sampling_rate
        if not rate:
            raise InvalidInput(f"Sampling rate is expected for model for audio task: {model.ref.model_id} has "
                               "no feature extractor with a `sampling_rate`")
        samples: np.ndarray = decode_audio(request.inputs, rate, request.limits)
        return {"raw": samples, "sampling_rate": rate}, {"x-compute-audio-length": f"{samples.size / rate:.3f}"}
