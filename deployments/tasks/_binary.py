"""What the image and audio tasks share: how the ingress reads their bodies, the preprocessor
they load, the compute headers, and decoding in the replica (``_media``)."""

from __future__ import annotations

import json
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictStr

from hubserve.errors import InputUnsupported, InvalidInput

from ._media import decode_audio, open_image
from ._params import Params, TopK
from ._pipeline import DEFAULT_TOP_K, call_pipeline
from .base import BinaryRequest, Measured, Payload, Task, TaskRequest


class ClassifierParameters(Params):
    """The ``parameters`` of image- and audio-classification."""

    function_to_apply: Optional[Literal["sigmoid", "softmax", "none"]] = None
    top_k: Optional[TopK] = None


class ClassifierRequest(BinaryRequest):
    """The request of image- and audio-classification: the input's bytes and ``ClassifierParameters``."""

    inputs: StrictBytes
    parameters: ClassifierParameters = ClassifierParameters()


def run_grouped(model: Any, requests: Sequence[TaskRequest],
                decode: Callable[[TaskRequest], tuple[Any, dict[str, str]]],
                kwargs_of: Callable[[TaskRequest], dict], shape: Callable[[Any], Any],
                call: Optional[Callable[..., list]] = None) -> list[Any]:
    """One backend call per distinct parameter set over the decoded inputs of a batch.

    ``decode`` gives a request's input and its compute headers, ``kwargs_of`` its keywords (JSON
    values), ``shape`` turns the answer for one input into the wire form. ``call(inputs, **kwargs)``
    answers a list of inputs (the backend's pipeline ``forward`` by default). An input that does
    not decode fails alone; a parameter set the pipeline refuses fails the requests that sent it.
    """
    out: list[Any] = [None] * len(requests)
    groups: dict[str, tuple[dict, list[tuple[int, Any, dict]]]] = {}
    for i, req in enumerate(requests):
        try:
            value, headers = decode(req)
        except InvalidInput as exc:
            out[i] = exc
            continue
        kwargs = kwargs_of(req)
        groups.setdefault(json.dumps(kwargs, sort_keys=True), (kwargs, []))[1].append((i, value, headers))
    for kwargs, members in groups.values():
        try:
            rows = call_pipeline(call or model.backend.forward, [value for _, value, _ in members], **kwargs)
        except InputUnsupported as exc:
            rows = [exc] * len(members)
        for (i, _, headers), row in zip(members, rows):
            if isinstance(row, InvalidInput):
                out[i] = row
            else:
                out[i] = Measured(shape(row), headers) if headers else shape(row)
    return out


def classify(model: Any, requests: Sequence[TaskRequest],
             decode: Callable[[TaskRequest], tuple[Any, dict[str, str]]]) -> list[Any]:
    """``[{label, score}, ...]`` per request (``run_grouped`` over ``ClassifierParameters``)."""
    def kwargs_of(req: TaskRequest) -> dict:
        fn = req.parameters.function_to_apply
        return {"top_k": req.parameters.top_k or DEFAULT_TOP_K, **({"function_to_apply": fn} if fn else {})}

    return run_grouped(model, requests, decode, kwargs_of, labels_and_scores)


def labels_and_scores(rows: Sequence[dict]) -> list[dict]:
    """The flat ``[{label, score}]`` of a classification pipeline's answer."""
    return [{"label": r["label"], "score": float(r["score"])} for r in rows]


class ImageQuestion(BaseModel):
    """``{"image": <bytes>, "question": str}``: the input of the visual QA tasks."""

    # NOTE(hubserve): as TaskRequest's, so that cache keys hold the image as base64.
    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64")
    image: StrictBytes
    question: StrictStr = Field(min_length=1)


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
        return open_image(inputs.image if isinstance(inputs, ImageQuestion) else inputs, request.limits)


class ImageQuestionTask(ImageTask):
    """A question about an image: ``{"inputs": {"image": <base64>, "question": str}}``, or the
    client's ``{"inputs": <base64 image>, "question": str}`` (and the legacy top-level
    ``image``), or the raw image with ``?question=`` in the query."""

    preprocessors = ("tokenizer", "image_processor")

    def request_data(self, payload: Payload) -> dict:
        params = dict(payload.parameters)
        inputs = payload.inputs
        if not isinstance(inputs, dict):
            question = payload.extra.get("question", params.pop("question", None))
            inputs = {"image": inputs, **({"question": question} if question is not None else {})}
        return {"inputs": inputs, "parameters": params}


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
