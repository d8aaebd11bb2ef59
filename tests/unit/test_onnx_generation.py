"""The ONNX generation families: export tiny random models, attach sessions, and compare ``generate`` with torch."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")

from deployments.backends import onnx_decoder, onnx_encdec  # noqa: E402
from tests.tiny_models import CHAT_TEMPLATE, bpe_tokenizer, build_gpt2  # noqa: E402

NEW = 8


def _sessions(module, folder):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return {name: ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
            for name in module.GRAPHS}


def _exported(module, model, folder):
    """(reference torch model, attached copy) for ``model``."""
    module.export(model, folder)
    assert sorted(p.name for p in folder.glob("*.onnx")) == sorted(module.GRAPHS)
    attached = copy.deepcopy(model)
    module.attach(attached, _sessions(module, folder))
    return model, attached


def _decoder_only(kind: str, folder):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    if kind == "gpt2":
        build_gpt2(folder)
        return AutoModelForCausalLM.from_pretrained(folder).eval()
    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(with_template=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    else:
        model = Qwen3ForCausalLM(Qwen3Config(**common, head_dim=8))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder).eval()


@pytest.fixture(scope="module", params=["gpt2", "llama", "qwen3"])
def causal(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    model = _decoder_only(request.param, folder / "model")
    return (*_exported(onnx_decoder, model, folder / "onnx"), folder / "model")


def _same(reference, attached, **kwargs):
    expected = reference.generate(**kwargs)
    got = attached.generate(**kwargs)
    assert torch.equal(expected, got), (expected, got)
    return got


def test_causal_greedy_batches_and_beams(causal):
    reference, attached, _ = causal
    samples = onnx_decoder.gate_inputs(reference)
    assert samples[1]["attention_mask"][1, 0] == 0  # a left-padded batch of two
    for sample in samples:
        out = _same(reference, attached, **sample, do_sample=False, max_new_tokens=NEW)
        assert out.shape[1] > sample["input_ids"].shape[1]
        _same(reference, attached, **sample, do_sample=False, max_new_tokens=NEW, num_beams=3,
              num_return_sequences=2)
    # the replaced weights are gone, the model's metadata is not
    assert all(p.numel() == 0 for p in attached.parameters())
    assert attached.dtype == torch.float32 and attached.device.type == "cpu"


def test_causal_streamer_logits_and_chat_template(causal):
    from transformers import AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    reference, attached, folder = causal
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = tokenizer.chat_template or CHAT_TEMPLATE
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Paris is the capital of France."}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt = {"input_ids": prompt["input_ids"], "attention_mask": prompt["attention_mask"]}

    class Collect(BaseStreamer):
        def __init__(self):
            self.tokens = []

        def put(self, value):
            self.tokens += value.reshape(-1).tolist()

        def end(self):
            self.tokens.append("end")

    streams = []
    outs = []
    for model in (reference, attached):
        streamer = Collect()
        outs.append(model.generate(**prompt, do_sample=False, max_new_tokens=NEW, streamer=streamer,
                                   output_logits=True, return_dict_in_generate=True))
        streams.append(streamer.tokens)
    assert streams[0] == streams[1] and streams[1][-1] == "end"
    assert torch.equal(outs[0].sequences, outs[1].sequences)
    for expected, got in zip(outs[0].logits, outs[1].logits):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_causal_refuses_sliding_window_and_encoder_decoder(tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration, MistralConfig, MistralForCausalLM

    sliding = MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                               num_attention_heads=2, num_key_value_heads=1, sliding_window=4))
    with pytest.raises(ValueError, match="sliding"):
        onnx_decoder.export(sliding.eval(), tmp_path / "mistral")
    bart = BartForConditionalGeneration(BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1,
                                                   encoder_attention_heads=2, decoder_attention_heads=2,
                                                   encoder_ffn_dim=16, decoder_ffn_dim=16))
    with pytest.raises(ValueError, match="encoder-decoder"):
        onnx_decoder.export(bart.eval(), tmp_path / "bart")
    with pytest.raises(ValueError, match="not an encoder-decoder"):
        onnx_encdec.export(sliding, tmp_path / "mistral2")
    assert not list(tmp_path.glob("**/*.onnx"))


WHISPER_VOCAB = 200
#: Without timestamps, a random model emitting a timestamp id would make Whisper's generate loop over
#: many short segments (seek advanced by each timestamp): suppressed for the plain runs.
NO_TIMESTAMP_IDS = {"suppress_tokens": list(range(53, WHISPER_VOCAB))}


def _tiny_whisper():
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    eos, start, no_timestamps = 50, 51, 52  # every id above no_timestamps is a timestamp
    config = WhisperConfig(vocab_size=WHISPER_VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37,
                           decoder_ffn_dim=37, num_mel_bins=80, max_source_positions=1500,  # 3000 frames, as in 30 s
                           max_target_positions=64, init_std=0.2,
                           pad_token_id=eos, bos_token_id=eos, eos_token_id=eos, decoder_start_token_id=start)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=eos, pad_token_id=eos, bos_token_id=eos,
        no_timestamps_token_id=no_timestamps, is_multilingual=False, max_length=64, max_initial_timestamp_index=50,
        begin_suppress_tokens=[eos], suppress_tokens=[],
    )
    return model


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return _exported(onnx_encdec, _tiny_whisper(), tmp_path_factory.mktemp("whisper"))


@pytest.mark.parametrize("options", [NO_TIMESTAMP_IDS, {"return_timestamps": True},
                                     {"num_beams": 3, **NO_TIMESTAMP_IDS}],
                         ids=["greedy", "timestamps", "beams"])
def test_whisper_generate(whisper, options):
    reference, attached = whisper
    samples = onnx_encdec.gate_inputs(reference)
    for sample in samples[:1] if "num_beams" in options else samples:  # beams: one input keeps it quick
        assert sample["input_features"].shape[1:] == (80, 3000)
        out = _same(reference, attached, **sample, max_new_tokens=NEW, **options)
        if "suppress_tokens" in options:
            assert out.shape[1] <= 4 + NEW  # one segment: the prompt tokens plus at most NEW


def test_whisper_weights_freed(whisper):
    reference, attached = whisper
    assert all(p.numel() == 0 for p in attached.parameters())
    assert attached.model.encoder.conv1.stride  # module structure kept for WhisperGenerationMixin


@pytest.fixture(scope="module", params=["bart", "t5"])
def seq2seq(request, tmp_path_factory):
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if request.param == "bart":
        model = BartForConditionalGeneration(BartConfig(
            vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
            init_std=0.2, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
            forced_eos_token_id=None))
    else:  # relative position buckets, no position ids, cross-attention without a bias
        model = T5ForConditionalGeneration(T5Config(
            vocab_size=120, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0, initializer_factor=0.5))
    return _exported(onnx_encdec, model.eval(), tmp_path_factory.mktemp(request.param))


def test_seq2seq_generate_padded_batch_and_beams(seq2seq):
    reference, attached = seq2seq
    one, two = onnx_encdec.gate_inputs(reference)
    assert two["attention_mask"][0, 0] == 0  # a padded source in the batch
    for sample in (one, two):
        _same(reference, attached, **sample, do_sample=False, max_new_tokens=NEW)
        _same(reference, attached, **sample, do_sample=False, max_new_tokens=NEW, num_beams=3, num_return_sequences=2)
