"""The model store: ids, layouts, revisions and task inference (no Ray)."""

import json
import os
import time

import pytest

from deployments.tasks import check_can_run, get_task, infer_task
from hubserve.config.deployments import ModelEntry
from hubserve.errors import InvalidInput, ModelNotFound
from hubserve.repos.folders import read_front_matter
from hubserve.repos.refs import validate_model_id
from hubserve.repos.store import ModelStore


@pytest.mark.parametrize("bad", ["", "../etc", "a/../b", "/abs", "a\\b", "a\x00b", "a/b/c", "a//b", "a/", "-x/y",
                                 "a/b c"])
def test_unsafe_ids_are_refused(bad):
    with pytest.raises(InvalidInput, match="Invalid model id"):
        validate_model_id(bad)


@pytest.mark.parametrize("good", ["gpt2", "org/name", "sentence-transformers/all-MiniLM-L6-v2", "a.b/c_d-1"])
def test_hub_ids_are_accepted(good):
    assert validate_model_id(good) == good


def make_model(folder, archs=("BertModel",), readme=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": list(archs), "model_type": "bert"}))
    (folder / "model.safetensors").write_bytes(b"0" * 10)
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return folder


def test_store_layouts_and_missing(tmp_path):
    make_model(tmp_path / "org" / "name")
    make_model(tmp_path / "gpt2", ["GPT2LMHeadModel"])
    store = ModelStore(tmp_path)
    ref = store.resolve("org/name")
    assert ref.path == tmp_path / "org" / "name" and ref.source == "store" and len(ref.sha) == 40
    assert ref.size_bytes == 10
    assert store.resolve("gpt2").architectures == ("GPT2LMHeadModel",)
    with pytest.raises(ModelNotFound, match="Model org/other does not exist"):
        store.resolve("org/other")
    assert store.model_ids() == ["gpt2", "org/name"]


def test_a_folder_without_config_is_not_a_model(tmp_path):
    (tmp_path / "org" / "half").mkdir(parents=True)
    with pytest.raises(ModelNotFound):
        ModelStore(tmp_path).resolve("org/half")


def test_hf_cache_layout_is_read(tmp_path):
    sha = "a" * 40
    repo = tmp_path / "cache" / "models--org--cached"
    make_model(repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    store = ModelStore(tmp_path / "store", hf_cache=tmp_path / "cache")
    ref = store.resolve("org/cached")
    assert (ref.sha, ref.source) == (sha, "hf-cache")
    assert "org/cached" in store.model_ids()


def test_changed_files_give_a_new_sha(tmp_path):
    folder = make_model(tmp_path / "org" / "m")
    store = ModelStore(tmp_path, ttl_s=0)
    first = store.resolve("org/m").sha
    weights = folder / "model.safetensors"
    weights.write_bytes(b"1" * 11)
    os.utime(weights, (time.time() + 5, time.time() + 5))
    assert store.resolve("org/m").sha != first


def test_config_entry_path_and_task(tmp_path):
    folder = make_model(tmp_path / "elsewhere")
    store = ModelStore(tmp_path / "store", entries={"pinned/one": ModelEntry(path=str(folder), task="fill-mask")})
    ref = store.resolve("pinned/one")
    assert ref.source == "config" and ref.config_task == "fill-mask"
    assert infer_task(ref) == "fill-mask"


def test_front_matter(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("---\npipeline_tag: summarization\ntags: [a]\n---\n# card\n")
    assert read_front_matter(readme)["pipeline_tag"] == "summarization"
    readme.write_text("no front matter")
    assert read_front_matter(readme) == {}


@pytest.mark.parametrize("archs,expected", [
    (["BertForSequenceClassification"], "text-classification"),
    (["BertForTokenClassification"], "token-classification"),
    (["BertForQuestionAnswering"], "question-answering"),
    (["BertForMaskedLM"], "fill-mask"),
    (["GPT2LMHeadModel"], "text-generation"),
    (["LlamaForCausalLM"], "text-generation"),
    (["BartForConditionalGeneration"], "text2text-generation"),
    (["MarianMTModel"], "text2text-generation"),
    (["BertModel"], "feature-extraction"),
])
def test_task_from_architectures(tmp_path, archs, expected):
    make_model(tmp_path / "o" / "m", archs)
    assert infer_task(ModelStore(tmp_path).resolve("o/m")) == expected


def test_pipeline_tag_wins_and_sentence_transformers_are_similarity(tmp_path):
    make_model(tmp_path / "o" / "nli", ["BertForSequenceClassification"], "---\npipeline_tag: zero-shot-classification\n---\n")
    st = make_model(tmp_path / "o" / "st")
    (st / "modules.json").write_text("[]")
    store = ModelStore(tmp_path)
    assert infer_task(store.resolve("o/nli")) == "zero-shot-classification"
    assert infer_task(store.resolve("o/st")) == "sentence-similarity"


def test_unsettled_task_is_a_clear_400(tmp_path):
    make_model(tmp_path / "o" / "unknown", ["FooForBarring"])
    make_model(tmp_path / "o" / "tagged", ["Foo"], "---\npipeline_tag: depth-estimation\n---\n")
    make_model(tmp_path / "o" / "vision", ["ViTForImageClassification"])
    store = ModelStore(tmp_path)
    with pytest.raises(InvalidInput, match="no pipeline_tag.*FooForBarring"):
        infer_task(store.resolve("o/unknown"))
    with pytest.raises(InvalidInput, match="pipeline_tag `depth-estimation`"):
        infer_task(store.resolve("o/tagged"))
    assert infer_task(store.resolve("o/vision")) == "image-classification"


def test_task_overrides_need_matching_weights_and_preprocessors(tmp_path):
    folder = make_model(tmp_path / "o" / "base", ["BertModel"])
    (folder / "tokenizer.json").write_text("{}")
    ref = ModelStore(tmp_path).resolve("o/base")
    check_can_run(get_task("feature-extraction"), ref)
    check_can_run(get_task("sentence-similarity"), ref)
    with pytest.raises(InvalidInput, match="Task not found for this model"):
        check_can_run(get_task("text-classification"), ref)
    make_model(tmp_path / "o" / "detector", ["YolosForObjectDetection"])
    detector = ModelStore(tmp_path).resolve("o/detector")
    with pytest.raises(InvalidInput, match="o/detector cannot run `feature-extraction`: it has no tokenizer"):
        check_can_run(get_task("feature-extraction"), detector)
    with pytest.raises(InvalidInput, match="it has no image_processor .*preprocessor_config.json"):
        check_can_run(get_task("object-detection"), detector)
