"""The backend protocol: what a task may ask of a loaded model.

A backend owns one model revision on one device. Task modules call only these
methods, so they never import a framework; ``torch_backend.py`` (and later
backends) are the only modules that do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Head:
    """A model head, as a task declares it (``Task.head``).

    Attributes:
        name: keys loaded models and exports (``base``, ``sequence-classification``, ...).
        auto_class: the transformers class that loads it (``AutoModelForImageClassification``).
        ort_class: optimum's ONNX Runtime class of its export, None where there is none.
        export_task: optimum's exporter task of that export.
        generative: whether it generates (int8 quantization does not apply).
        library: ``transformers``, or ``diffusers`` for diffusion pipelines (``auto_class`` is
            then diffusers' pipeline class).
    """

    name: str
    auto_class: str
    ort_class: Optional[str] = None
    export_task: Optional[str] = None
    generative: bool = False
    library: str = "transformers"


#: The preprocessors a task may load from a model folder (``Task.preprocessors``): transformers'
#: ``AutoTokenizer``, ``AutoImageProcessor``, ``AutoFeatureExtractor`` and ``AutoProcessor``,
#: handed to its pipeline under these keyword names.
PREPROCESSORS = {
    "tokenizer": "AutoTokenizer",
    "image_processor": "AutoImageProcessor",
    "feature_extractor": "AutoFeatureExtractor",
    "processor": "AutoProcessor",
}


@dataclass(frozen=True)
class LoadSpec:
    """What to load and where.

    Attributes:
        path: the model folder.
        head: the head to load (``Task.head``).
        pipeline: the transformers pipeline task ``forward`` runs, or None.
        device: ``cpu`` or ``cuda``.
        threads: intra-op threads for this replica (None: leave as is).
        model_id: the model's id; with ``revision`` it keys derived artefacts (ONNX exports).
        revision: the model's sha.
        cache_dir: where derived artefacts are kept.
        dtype: ``float32``, or ``float16`` (torch on cuda).
        preprocessors: what to load beside the weights (keys of ``PREPROCESSORS``).
        optional_preprocessors: what to load when the folder has it (a document model's image
            processor).
        limits: the config's ``LimitsConfig``, which bounds the model's own generation defaults
            and its chat template's rendering (None: the defaults).
    """

    path: Path
    head: Head
    pipeline: Optional[str] = None
    device: str = "cpu"
    threads: Optional[int] = None
    model_id: str = ""
    revision: str = ""
    cache_dir: Optional[Path] = None
    dtype: str = "float32"
    preprocessors: tuple[str, ...] = ("tokenizer",)
    optional_preprocessors: tuple[str, ...] = ()
    limits: Any = None


@dataclass
class Generation:
    """One generated sequence.

    Attributes:
        text: the generated text (without the prompt).
        finish_reason: ``length``, ``eos_token`` or ``stop_sequence``.
        tokens: ``{"id", "text", "logprob", "special"}`` per generated token.
        seed: the seed used when sampling, else None.
        generated_tokens: how many tokens were generated.
        prompt_tokens: how many tokens the prompt had.
    """

    text: str
    finish_reason: str
    tokens: list[dict] = field(default_factory=list)
    seed: Optional[int] = None
    generated_tokens: int = 0
    prompt_tokens: int = 0


@runtime_checkable
class Backend(Protocol):
    """One loaded model. ``compute_type`` is the ``x-compute-type`` it earns.

    A ``deadline`` keyword (epoch seconds) of ``forward``, ``generate`` and ``stream``
    bounds the time a generation may take.
    """

    compute_type: str
    mask_token: Optional[str]
    max_input_tokens: int
    vocab_size: int
    #: Samples per second the model's feature extractor takes (audio models), else None.
    sampling_rate: Optional[int]
    #: Whether the model runs through ``generate`` (its pipeline then takes ``generate_kwargs``).
    can_generate: bool

    def load(self, spec: LoadSpec) -> None:
        """Loads weights and tokenizer; raises ``ModelLoadError`` naming the cause."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the transformers pipeline of ``spec.pipeline`` (a ``seed`` kwarg seeds sampling)."""

    def chat_prompt(self, messages: list[dict], deadline: Optional[float] = None) -> str:
        """The prompt of a conversation, rendered with the model's chat template under
        ``LoadSpec.limits`` (and the request's ``deadline``)."""

    def embed(self, texts: Sequence[str], *, truncate: bool, max_length: Optional[int] = None,
              truncation_side: str = "right") -> tuple[np.ndarray, np.ndarray]:
        """Token embeddings ``[batch, tokens, hidden]`` and the attention mask ``[batch, tokens]``."""

    def generate(self, prompt: str, params: dict, *, want_tokens: bool = False) -> list[Generation]:
        """Continues ``prompt`` (causal LMs); one ``Generation`` per returned sequence."""

    def stream(self, prompt: str, params: dict) -> Iterator[Union[dict, "Generation"]]:
        """Yields each generated token (``{id, text, logprob, special}``), then the ``Generation``."""

    def close(self) -> None:
        """Frees the weights."""
