"""Tiny random models of the families that exist only in transformers 5, built offline.

Encoders (``gte``, ``nomic_bert``, ``eurobert``): a sentence-transformers layout of the base
model (feature-extraction and sentence-similarity), and the sequence classification, token
classification and masked-LM heads. Decoders (``qwen3_5_text``, ``gemma4_text``,
``ministral3``): a causal LM with a chat template and a generation config; ``ministral3`` also
has a question-answering head. Speech: ``lasr_ctc``, a CTC speech recognizer
(``AutoModelForCTC``). Each is seeded, 2 layers, hidden size 32 or 64, with the tokenizers of
``tests.tiny_models``; ``build_new_families(root)`` writes them into a store in the Hub layout.
"""

from __future__ import annotations

from pathlib import Path

from tests.tiny_models import CORPUS, bpe_tokenizer, sentence_transformers_layout, wordpiece_tokenizer

#: The organisation of the new-family models in the store.
ORG = "newfam"
ENCODERS = ("gte", "nomic_bert", "eurobert")
DECODERS = ("qwen3_5_text", "gemma4_text", "ministral3")
SPEECH = "lasr_ctc"
#: The labels of the classifiers.
SENTIMENT = ["NEGATIVE", "POSITIVE"]
NER = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
#: A chat template with the usual role loop.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
#: The characters of the tiny speech recognizer (``▁`` starts a word, as in SentencePiece).
SPEECH_CHARACTERS = list("abcdefghijklmnopqrstuvwxyz'")

#: The class prefix of each family's heads (``<prefix>Model``, ``<prefix>ForMaskedLM``...).
PREFIX = {"gte": "Gte", "nomic_bert": "NomicBert", "eurobert": "EuroBert", "qwen3_5_text": "Qwen3_5",
          "gemma4_text": "Gemma4", "ministral3": "Ministral3"}
#: The encoder heads saved per family: folder suffix -> (class suffix, pipeline_tag, labels).
ENCODER_HEADS = {
    "sentiment": ("ForSequenceClassification", None, SENTIMENT),
    "ner": ("ForTokenClassification", None, NER),
    "mlm": ("ForMaskedLM", None, None),
}


def model_id(family: str, kind: str) -> str:
    """The store id of a family's model: ``newfam/gte-mlm``, ``newfam/qwen3_5_text-lm``."""
    return f"{ORG}/{family.replace('_', '-')}-{kind}"


#: Served with ``backend: auto`` by the test graph: their exports pass the gate (ONNX Runtime).
NEW_FAMILIES_OPTIMIZED = (f"{ORG}/gte-sentence", f"{ORG}/ministral3-lm")


def _labels(labels: list[str] | None) -> dict:
    if not labels:
        return {}
    return {"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}


def encoder_config(family: str, tokenizer, **kw):
    """A tiny config of an encoder family (hidden 32, 2 layers, 2 heads)."""
    import transformers

    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=37, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id, **kw)
    if family == "gte":
        return transformers.GteConfig(type_vocab_size=2, **common)
    if family == "nomic_bert":
        return transformers.NomicBertConfig(type_vocab_size=2, **common)
    return transformers.EuroBertConfig(num_key_value_heads=2, mask_token_id=tokenizer.mask_token_id,
                                       bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                       **common)


def _save(model, tokenizer, folder: Path, pipeline_tag: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if pipeline_tag:
        (folder / "README.md").write_text(f"---\npipeline_tag: {pipeline_tag}\nlicense: mit\n---\n# tiny\n")


def build_encoder(folder: Path, family: str, head: str, labels: list[str] | None = None,
                  pipeline_tag: str | None = None) -> None:
    """A tiny encoder of ``family`` with the head class ``<Prefix><head>`` (``Model`` for the base)."""
    import torch
    import transformers

    torch.manual_seed(0)
    tokenizer = wordpiece_tokenizer()
    config = encoder_config(family, tokenizer, **_labels(labels))
    model = getattr(transformers, PREFIX[family] + head)(config).eval()
    _save(model, tokenizer, folder, pipeline_tag)


def build_sentence_encoder(folder: Path, family: str) -> None:
    """The base model of ``family`` laid out as a sentence-transformers model (mean pooling, Normalize)."""
    build_encoder(folder, family, "Model", pipeline_tag="sentence-similarity")
    sentence_transformers_layout(folder)


def chat_tokenizer():
    """The byte-level BPE tokenizer of ``tests.tiny_models`` with a chat template."""
    tokenizer = bpe_tokenizer(with_template=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def decoder_config(family: str, tokenizer, **kw):
    """A tiny config of a decoder family (hidden 64, 2 layers, 4 heads of 16, 2 key-value heads)."""
    import transformers

    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                  tie_word_embeddings=True, **special, **kw)
    if family == "qwen3_5_text":
        # NOTE: one gated-delta-net (linear attention) layer and one full-attention layer.
        return transformers.Qwen3_5TextConfig(
            layer_types=["linear_attention", "full_attention"], linear_conv_kernel_dim=4, linear_key_head_dim=16,
            linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, **common)
    if family == "gemma4_text":
        return transformers.Gemma4TextConfig(
            layer_types=["sliding_attention", "full_attention"], sliding_window=32, global_head_dim=16,
            hidden_size_per_layer_input=0,
            vocab_size_per_layer_input=len(tokenizer), num_kv_shared_layers=0, **common)
    # NOTE: Ministral 3 attention reads `llama_4_scaling_beta` and `original_max_position_embeddings`.
    rope = {"rope_type": "yarn", "rope_theta": 1e6, "factor": 1.0, "original_max_position_embeddings": 256,
            "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.1}
    return transformers.Ministral3Config(sliding_window=None, rope_parameters=rope, **common)


def generation_config(tokenizer):
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, do_sample=False)


def build_decoder(folder: Path, family: str) -> None:
    """A tiny causal LM of ``family`` with a chat template, eos/pad tokens and a generation config."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tokenizer = chat_tokenizer()
    model = AutoModelForCausalLM.from_config(decoder_config(family, tokenizer)).eval()
    model.generation_config = generation_config(tokenizer)
    _save(model, tokenizer, folder)


def build_decoder_qa(folder: Path, family: str = "ministral3") -> None:
    """A decoder family's extractive question-answering head (``Ministral3ForQuestionAnswering``)."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(with_template=False)
    model = AutoModelForQuestionAnswering.from_config(decoder_config(family, tokenizer)).eval()
    _save(model, tokenizer, folder)


def speech_tokenizer():
    """A character-level LASR (Unigram) tokenizer over ``SPEECH_CHARACTERS``."""
    from transformers import LasrTokenizer

    pieces = ["<pad>", "</s>", "<unk>", "▁"] + SPEECH_CHARACTERS + [f"▁{c}" for c in SPEECH_CHARACTERS]
    vocab = [(p, 0.0 if i < 3 else -float(i)) for i, p in enumerate(pieces)]
    return LasrTokenizer(vocab=vocab, extra_ids=0)


def build_lasr_ctc(folder: Path) -> None:
    """A tiny LASR conformer CTC speech recognizer with its tokenizer and feature extractor (16 kHz)."""
    import torch
    from transformers import LasrCTCConfig, LasrFeatureExtractor, LasrForCTC

    torch.manual_seed(0)
    tokenizer = speech_tokenizer()
    encoder = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                   conv_kernel_size=5, subsampling_conv_channels=16, num_mel_bins=32, max_position_embeddings=512)
    config = LasrCTCConfig(vocab_size=len(tokenizer), encoder_config=encoder, pad_token_id=tokenizer.pad_token_id)
    _save(LasrForCTC(config).eval(), tokenizer, folder)
    LasrFeatureExtractor(feature_size=32, sampling_rate=16000).save_pretrained(folder)


def new_family_models() -> dict[str, tuple[str, object]]:
    """``{model id: (task, builder(folder))}`` of every new-family model."""
    out: dict[str, tuple[str, object]] = {}
    for family in ENCODERS:
        out[model_id(family, "sentence")] = ("sentence-similarity",
                                             lambda f, fam=family: build_sentence_encoder(f, fam))
        for kind, (head, tag, labels) in ENCODER_HEADS.items():
            task = {"sentiment": "text-classification", "ner": "token-classification", "mlm": "fill-mask"}[kind]
            out[model_id(family, kind)] = (task, lambda f, fam=family, h=head, t=tag, l=labels:
                                           build_encoder(f, fam, h, l, t))
    for family in DECODERS:
        out[model_id(family, "lm")] = ("text-generation", lambda f, fam=family: build_decoder(f, fam))
    out[model_id("ministral3", "qa")] = ("question-answering", build_decoder_qa)
    out[model_id(SPEECH, "asr")] = ("automatic-speech-recognition", build_lasr_ctc)
    return out


def build_new_families(root: Path) -> dict[str, str]:
    """Writes every new-family model into the store ``root`` (Hub layout); returns ``{model id: task}``."""
    out = {}
    for mid, (task, builder) in new_family_models().items():
        folder = root / mid
        folder.mkdir(parents=True, exist_ok=True)
        builder(folder)
        out[mid] = task
    return out


#: Words the tests send (all in ``CORPUS``, so they tokenize into known pieces).
SAMPLE = CORPUS[4]
