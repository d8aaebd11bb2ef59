"""Tiny random models for every task (hidden size 32, 2 layers), built offline.

Tokenizers are trained with ``tokenizers`` on a small corpus, so nothing is
downloaded. ``build_store`` writes one model per task into a store folder in the
Hub layout and returns ``{task: model_id}``.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse.",
    "My name is Sarah Jessica Parker but you can call me Jessica.", "Paris is the capital of France.",
    "The quick brown fox jumps over the lazy dog.", "I love this movie, it is wonderful!",
    "This is the worst film I have ever seen.", "Hugging Face builds tools for machine learning.",
    "Where do I live? I live in Berlin and work in Munich.", "translate English to German: hello world",
    "summarize: the cat sat on the mat and looked at the birds outside the window all day long.",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def wordpiece_tokenizer(max_length: int = 128):
    """A BERT-style fast tokenizer trained on ``CORPUS``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=WORDPIECE_SPECIALS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length,
    )


def bpe_tokenizer(with_template: bool, max_length: int = 128, **kw):
    """A byte-level BPE fast tokenizer (GPT-2 / BART style) trained on ``CORPUS``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=BPE_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if with_template:
        bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", model_max_length=max_length, **kw,
    )


def _bert_config(tokenizer, **kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id, **kw)


def _save(model, tokenizer, folder: Path, pipeline_tag: str | None = None) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if pipeline_tag:
        (folder / "README.md").write_text(f"---\npipeline_tag: {pipeline_tag}\nlicense: mit\n---\n# tiny\n")


def build_bert(folder: Path, head: str, pipeline_tag: str | None = None, labels: list[str] | None = None) -> None:
    """A tiny BERT with the given transformers head class name."""
    import torch
    import transformers

    torch.manual_seed(0)
    tokenizer = wordpiece_tokenizer()
    extra = {}
    if labels:
        extra = {"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
    model = getattr(transformers, head)(_bert_config(tokenizer, **extra)).eval()
    _save(model, tokenizer, folder, pipeline_tag)


def build_sentence_transformer(folder: Path, readme: bool = True) -> None:
    """A tiny BERT laid out as a sentence-transformers model (mean pooling + Normalize)."""
    build_bert(folder, "BertModel", "sentence-similarity" if readme else None)
    sentence_transformers_layout(folder)


def sentence_transformers_layout(folder: Path) -> None:
    """The sentence-transformers files around a saved 32-wide base model (mean pooling + Normalize)."""
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))


def build_gpt2(folder: Path) -> None:
    """A tiny GPT-2 causal LM."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(with_template=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    _save(GPT2LMHeadModel(config).eval(), tokenizer, folder)


def build_bart(folder: Path, pipeline_tag: str | None = None) -> None:
    """A tiny BART encoder-decoder."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(with_template=True)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    _save(BartForConditionalGeneration(config).eval(), tokenizer, folder, pipeline_tag)


#: The labels of the tiny image classifier.
IMAGE_LABELS = ["cat", "dog", "car"]


def build_vit(folder: Path) -> None:
    """A tiny ViT image classifier (32x32 pixels, patches of 8) with its image processor."""
    import torch
    from transformers import ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = _vit_config(num_labels=len(IMAGE_LABELS), **_labels(IMAGE_LABELS))
    ViTForImageClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _labels(labels: list[str]) -> dict:
    return {"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}


def build_yolos(folder: Path) -> None:
    """A tiny YOLOS detector over ``IMAGE_LABELS`` (4 detection tokens)."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    torch.manual_seed(0)
    config = YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                         image_size=[32, 32], patch_size=8, num_detection_tokens=4, num_labels=len(IMAGE_LABELS),
                         **_labels(IMAGE_LABELS))
    YolosForObjectDetection(config).eval().save_pretrained(folder, safe_serialization=True)
    YolosImageProcessor(size={"shortest_edge": 32, "longest_edge": 64}).save_pretrained(folder)


def build_segformer(folder: Path) -> None:
    """A tiny SegFormer semantic segmenter over ``IMAGE_LABELS``."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
                             patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                             decoder_hidden_size=32, num_labels=len(IMAGE_LABELS), **_labels(IMAGE_LABELS))
    SegformerForSemanticSegmentation(config).eval().save_pretrained(folder, safe_serialization=True)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _vit_config(**kw):
    from transformers import ViTConfig

    return ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                     image_size=32, patch_size=8, **kw)


def build_clip(folder: Path) -> None:
    """A tiny CLIP (text and image towers) for zero-shot image classification."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(with_template=True, max_length=64, model_input_names=["input_ids", "attention_mask"])
    tower = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=64, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id, **tower),
        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=16)
    _save(CLIPModel(config).eval(), tokenizer, folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def build_vit_gpt2(folder: Path) -> None:
    """A tiny image captioner: a ViT encoder and a GPT-2 decoder (``VisionEncoderDecoderModel``)."""
    import torch
    from transformers import GPT2Config, ViTImageProcessor, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(with_template=False, max_length=64)
    decoder = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, add_cross_attention=True, is_decoder=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(_vit_config(), decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    _save(VisionEncoderDecoderModel(config).eval(), tokenizer, folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


#: The answers of the tiny visual question answerer.
VQA_ANSWERS = ["yes", "no", "red", "two"]


def build_vilt(folder: Path) -> None:
    """A tiny ViLT visual question answerer choosing among ``VQA_ANSWERS``."""
    import torch
    from transformers import ViltConfig, ViltForQuestionAnswering, ViltImageProcessor

    torch.manual_seed(0)
    tokenizer = wordpiece_tokenizer(max_length=40)
    config = ViltConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, image_size=64, patch_size=32, max_position_embeddings=40,
                        num_labels=len(VQA_ANSWERS), max_image_length=-1, **_labels(VQA_ANSWERS))
    _save(ViltForQuestionAnswering(config).eval(), tokenizer, folder)
    ViltImageProcessor(size={"shortest_edge": 64}, size_divisor=32).save_pretrained(folder)


def build_layoutlm(folder: Path) -> None:
    """A tiny LayoutLM document question answerer (it reads words and their boxes)."""
    import torch
    from transformers import LayoutLMConfig, LayoutLMForQuestionAnswering

    torch.manual_seed(0)
    tokenizer = wordpiece_tokenizer()
    config = LayoutLMConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    _save(LayoutLMForQuestionAnswering(config).eval(), tokenizer, folder)


def build_tapas(folder: Path) -> None:
    """A tiny TAPAS table question answerer with an aggregation head (NONE, SUM, AVERAGE, COUNT)."""
    import torch
    from transformers import TapasConfig, TapasForQuestionAnswering, TapasTokenizer

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = sorted(wordpiece_tokenizer().get_vocab().items(), key=lambda item: item[1])
    (folder / "vocab.txt").write_text("\n".join([token for token, _ in vocab] + ["[EMPTY]"]) + "\n")
    tokenizer = TapasTokenizer(str(folder / "vocab.txt"), model_max_length=128)
    config = TapasConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=128, num_aggregation_labels=4,
                         aggregation_labels={0: "NONE", 1: "SUM", 2: "AVERAGE", 3: "COUNT"},
                         no_aggregation_label_index=0, use_answer_as_supervision=True)
    model = TapasForQuestionAnswering(config).eval()
    with torch.no_grad():  # every cell's logit far above 0: it selects cells whatever its random weights
        model.output_bias.fill_(20.0)
    _save(model, tokenizer, folder)


#: The characters of the tiny speech synthesizer.
TTS_CHARACTERS = list(" abcdefghijklmnopqrstuvwxyz'.,?!")


def build_vits(folder: Path) -> None:
    """A tiny VITS speech synthesizer over letters (16 kHz), as MMS-TTS models are laid out."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(["<pad>", "<unk>", *TTS_CHARACTERS])}))
    tokenizer = VitsTokenizer(str(folder / "vocab.json"), pad_token="<pad>", unk_token="<unk>", phonemize=False)
    config = VitsConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, ffn_dim=32,
        flow_size=16, spectrogram_bins=17, upsample_initial_channel=16, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        prior_encoder_num_flows=2, prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1,
        duration_predictor_num_flows=1, duration_predictor_filter_channels=16, depth_separable_num_layers=1,
        sampling_rate=16000)
    _save(VitsModel(config).eval(), tokenizer, folder)


def build_stable_diffusion(folder: Path) -> None:
    """A tiny Stable Diffusion pipeline (UNet, VAE, CLIP text encoder, DDIM) drawing 32x32 images."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        sample_size=16)
    tokenizer = bpe_tokenizer(with_template=True, max_length=32, model_input_names=["input_ids", "attention_mask"])
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=32, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(clip_sample=False)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)


#: The labels of the tiny audio classifier.
AUDIO_LABELS = ["speech", "music", "noise"]
#: The characters of the tiny CTC speech recognizer (``|`` separates words).
CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'"]


def _wav2vec2_config(**kw):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                          conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8), num_feat_extract_layers=2,
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, do_stable_layer_norm=True,
                          feat_extract_norm="layer", **kw)


def _feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                    return_attention_mask=True)


def build_wav2vec2_ctc(folder: Path) -> None:
    """A tiny wav2vec2 CTC speech recognizer over letters, with its tokenizer and feature extractor."""
    import torch
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(CTC_VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    config = _wav2vec2_config(vocab_size=len(CTC_VOCAB), pad_token_id=0, ctc_loss_reduction="mean")
    _save(Wav2Vec2ForCTC(config).eval(), tokenizer, folder)
    _feature_extractor().save_pretrained(folder)


def build_wav2vec2_classifier(folder: Path) -> None:
    """A tiny wav2vec2 audio classifier (``AUDIO_LABELS``) with its feature extractor."""
    import torch
    from transformers import Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    config = _wav2vec2_config(num_labels=len(AUDIO_LABELS), classifier_proj_size=16,
                              id2label=dict(enumerate(AUDIO_LABELS)), label2id={l: i for i, l in enumerate(AUDIO_LABELS)})
    Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    _feature_extractor().save_pretrained(folder)


#: task -> (model id, builder)
TINY_MODELS = {
    "text-classification": ("tiny/bert-sentiment",
                            lambda f: build_bert(f, "BertForSequenceClassification", labels=["NEGATIVE", "POSITIVE"])),
    "token-classification": ("tiny/bert-ner", lambda f: build_bert(
        f, "BertForTokenClassification", labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])),
    "question-answering": ("tiny/bert-qa", lambda f: build_bert(f, "BertForQuestionAnswering")),
    "fill-mask": ("tiny/bert-mlm", lambda f: build_bert(f, "BertForMaskedLM")),
    "zero-shot-classification": ("tiny/bert-nli", lambda f: build_bert(
        f, "BertForSequenceClassification", "zero-shot-classification", ["contradiction", "neutral", "entailment"])),
    "feature-extraction": ("tiny/bert-base", lambda f: build_bert(f, "BertModel")),
    "sentence-similarity": ("tiny/sentence-bert", build_sentence_transformer),
    "text-generation": ("tiny/gpt2", build_gpt2),
    "text2text-generation": ("tiny/bart", build_bart),
    "summarization": ("tiny/bart-summarizer", lambda f: build_bart(f, "summarization")),
    "translation": ("tiny/bart-translator", lambda f: build_bart(f, "translation")),
    "image-classification": ("tiny/vit", build_vit),
    "automatic-speech-recognition": ("tiny/wav2vec2-ctc", build_wav2vec2_ctc),
    "audio-classification": ("tiny/wav2vec2-audio", build_wav2vec2_classifier),
    "object-detection": ("tiny/yolos", build_yolos),
    "image-segmentation": ("tiny/segformer", build_segformer),
    "zero-shot-image-classification": ("tiny/clip", build_clip),
    "image-to-text": ("tiny/vit-gpt2", build_vit_gpt2),
    "visual-question-answering": ("tiny/vilt", build_vilt),
    "document-question-answering": ("tiny/layoutlm", build_layoutlm),
    "table-question-answering": ("tiny/tapas", build_tapas),
    "text-to-speech": ("tiny/vits", build_vits),
    "text-to-image": ("tiny/stable-diffusion", build_stable_diffusion),
}


def build_store(root: Path) -> dict[str, str]:
    """Writes every tiny model into ``root`` (Hub layout); returns ``{task: model_id}``."""
    out = {}
    for task, (model_id, builder) in TINY_MODELS.items():
        folder = root / model_id
        folder.mkdir(parents=True, exist_ok=True)
        builder(folder)
        out[task] = model_id
    return out
