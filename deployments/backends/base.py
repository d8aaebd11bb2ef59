"""The backend protocol: what a task may ask of a loaded model.

A backend owns one model revision on one device. Task modules call only these
methods, so they never import a framework; ``torch_backend.py`` (and later
backends) are the only modules that do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Head:
    """A model head, as a task declares it (``Task.head``).

    Attributes:
        name: keys loaded models and exports (``base``, ``sequence-classification``, ...).
        auto_class: the transformers class that loads it (``AutoModelForImageClassification``).
        onnx: the ONNX graph family its export takes (``encoder``: one forward pass;
            ``causal-lm``, ``seq2seq-lm``, ``speech-seq2seq``, ``vision2seq``: generation with a
            key-value cache), None where it runs on torch only (``onnx_families``).
        generative: whether it generates (int8 quantization does not apply).
        library: ``transformers``, or ``diffusers`` for diffusion pipelines (``auto_class`` is
            then diffusers' pipeline class).
    """

    name: str
    auto_class: str
    onnx: Optional[str] = None
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

    def generation_presets(self) -> dict:
        """``{"prefix", "task_specific_params"}`` of the model's config (the legacy per-task
        prompt prefix and generation defaults)."""

    def generate_from_text(self, texts: Sequence[str], params: dict, *, defaults: dict,
                           task_params: Optional[dict] = None, prefix: str = "", truncation: Optional[str] = None,
                           translation: Optional[tuple] = None, clean_up: Optional[bool] = False,
                           check: Optional[Any] = None) -> list[list[str]]:
        """The texts a sequence-to-sequence model writes for each of ``texts`` (generated one at a
        time): ``prefix`` + text tokenized with ``truncation`` (or, for a tokenizer with
        ``_build_translation_inputs`` when ``translation`` is ``(src_lang, tgt_lang)``, by it), then
        ``generate`` with ``params`` (``seed`` and ``deadline`` too) over ``defaults`` and
        ``task_params`` as transformers 4's pipelines merged them, decoded without special tokens
        (``clean_up``: clean up tokenization spaces; None: as the tokenizer does). ``check(input_length,
        min_length, max_length)`` is called before each generation."""

    def generate_from_image(self, images: Sequence[Any], params: dict, *, defaults: dict,
                            question: Optional[str] = None) -> list[list[str]]:
        """The texts a model writes for each image: a caption, or the answer to ``question``."""

    def score_image_text(self, image: Any, text: str) -> list[tuple[str, float]]:
        """``(label, sigmoid score)`` of each of a classifier's labels for an image and a text (ViLT
        visual question answering), in label order."""

    def logits(self, encode: Callable[[Any], Any]) -> tuple[Any, list[dict[str, np.ndarray]]]:
        """Runs the model on text the task tokenizes: ``encoded = encode(tokenizer)`` with the
        model's tokenizer, whose ``encoded.rows`` lists ``{input name: token ids}`` per forward
        pass (one row each; inputs the model does not take are dropped). Returns ``(encoded,
        outputs)``, ``outputs[i]`` the tensor outputs of row i (``start_logits``, ``end_logits``...)
        as numpy arrays without the batch axis (bfloat16 as float32)."""

    def close(self) -> None:
        """Frees the weights."""
