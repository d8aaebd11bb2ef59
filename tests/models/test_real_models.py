"""Real outputs of the models ``make setup`` converts from PyPI packages (deployments/bootstrap.py):
whisper-tiny.en transcribes speech, EfficientNet-Lite0 names a cat and a cup of coffee, SmolLM2
answers a chat question and stops at the end of its turn. Each runs through its task module on
the PyTorch backend, as a replica does."""

from pathlib import Path

import pytest

from deployments.bootstrap import build_all
from tests.media import speech
from tests.replica import answer
from tests.replica import load as load_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def folders():
    return build_all(ROOT / "data" / "models")


def load(folders, model_id: str, task_name: str, tmp_path):
    return load_folder(folders[model_id], model_id, task_name, tmp_path)


def test_whisper_transcribes_speech(folders, tmp_path):
    task, model = load(folders, "openai/whisper-tiny.en", "automatic-speech-recognition", tmp_path)
    clip = speech("The quick brown fox jumps over the lazy dog.", "mp3")
    result = answer(task, model, clip)
    words = result.output["text"].lower()
    heard = {"quick", "brown", "fox", "lazy", "dog"} & set(words.replace(".", " ").split())
    assert len(heard) >= 4, words  # synthetic speech through a lossy codec: a word may slip
    assert set(result.output) == {"text"}
    assert 2.5 < float(result.headers["x-compute-audio-length"]) < 5
    timed = answer(task, model, clip, return_timestamps=True).output
    assert timed["chunks"] and timed["chunks"][0]["timestamps"][0] == 0.0
    assert timed["chunks"][-1]["timestamps"][1] <= 5


def test_efficientnet_names_a_cat_and_an_espresso(folders, tmp_path):
    task, model = load(folders, "hubserve/efficientnet-lite0", "image-classification", tmp_path)
    for image, label in (("cat.jpg", "Egyptian cat"), ("coffee.jpg", "espresso")):
        labels = answer(task, model, (DATA / image).read_bytes(), top_k=3).output
        assert labels[0]["label"] == label and labels[0]["score"] > 0.4, labels
        assert len(labels) == 3


def test_smollm2_answers_and_ends_its_turn(folders, tmp_path):
    task, model = load(folders, "HuggingFaceTB/SmolLM2-135M-Instruct", "text-generation", tmp_path)
    tokenizer = model.backend.tokenizer
    assert tokenizer("hi").input_ids == tokenizer("hi", add_special_tokens=False).input_ids  # no bos added
    assert tokenizer.eos_token == "<|im_end|>"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)
    out = answer(task, model, prompt, max_new_tokens=40, do_sample=False, return_full_text=False).output
    text = out[0]["generated_text"]
    assert "Paris" in text and len(text) < 100, text
