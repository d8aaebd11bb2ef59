"""Model folders that could run code or point outside themselves are refused; one id per model."""

import json
import os

import pytest

from hubserve.errors import InvalidInput, ModelNotFound
from hubserve.model_files import inspect_folder, refusals, without_pickles
from hubserve.store import ModelStore, validate_model_id
from hubserve.uploads import check_model_folder


def model(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (folder / "model.safetensors").write_bytes(b"\0")
    for name, content in files.items():
        path = folder / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


HOSTILE_FOLDERS = {
    "python file": ({"modeling_evil.py": "import os"}, "is code"),
    "custom_generate": ({"custom_generate__generate.py": "def generate(): ..."}, "code"),
    "custom_generate without py": ({"custom_generate__README.md": "x"}, "would import"),
    "auto_map in config": ({"config.json": {"model_type": "bert", "auto_map": {"AutoModel": "m.M"}}}, "auto_map"),
    "auto_map in tokenizer": ({"tokenizer_config.json": {"auto_map": {"AutoTokenizer": ["t.T", None]}}}, "auto_map"),
    "custom pipelines": ({"config.json": {"custom_pipelines": {"x": {"impl": "p.P"}}}}, "custom_pipelines"),
    "escaping weight map": ({"model.safetensors.index.json": {"weight_map": {"w": "../../etc/passwd"}}}, "outside"),
    "absolute weight map": ({"model.safetensors.index.json": {"weight_map": {"w": "/etc/passwd"}}}, "outside"),
    "tokenizer file": ({"tokenizer_config.json": {"vocab_file": "/etc/passwd"}}, "vocab_file"),
    "tokenizer files": ({"tokenizer_config.json": {"merges_files": ["ok.txt", "../x"]}}, "merges_files"),
    "modules path": ({"modules.json": [{"idx": 0, "path": "../other", "type": "sentence_transformers.models.Pooling"}]},
                     "module path"),
    "custom diffusion pipeline": ({"model_index.json": {"_class_name": ["pipeline", "EvilPipeline"]}},
                                  "custom pipeline is code"),
    "diffusion component from another module": (
        {"model_index.json": {"_class_name": "StableDiffusionPipeline", "unet": ["os", "system"]}}, "not diffusers"),
    "diffusion component outside the folder": (
        {"model_index.json": {"_class_name": "StableDiffusionPipeline", "../../etc": ["diffusers", "AutoencoderKL"]}},
        "not a plain name"),
    "diffusion component from local code": (
        {"model_index.json": {"_class_name": "StableDiffusionPipeline", "unet": ["unet_code", "UNet"]}},
        "not diffusers"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_FOLDERS))
def test_hostile_folders_are_refused_at_upload(tmp_path, kind):
    files, reason = HOSTILE_FOLDERS[kind]
    folder = model(tmp_path / "m", **files)
    with pytest.raises(InvalidInput, match=reason):
        check_model_folder(folder)
    assert refusals(inspect_folder(folder), trust_pickle=True, any_pickle=False)  # trusting pickles changes nothing


def test_links_are_refused_unless_they_stay_in_the_cache_repo(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    folder = model(tmp_path / "m")
    os.symlink(secret, folder / "vocab.txt")
    assert inspect_folder(folder).problems == ["vocab.txt is a link"]
    assert inspect_folder(folder, links_within=folder).problems == ["vocab.txt is a link"]
    repo = tmp_path / "models--o--m"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("{}")
    snap = model(repo / "snapshots" / ("0" * 40))
    os.symlink("../../blobs/abc", snap / "tokenizer_config.json")
    assert inspect_folder(snap, links_within=repo / "blobs").problems == []
    os.symlink(tmp_path, snap / "up")
    assert inspect_folder(snap, links_within=repo / "blobs").problems == ["up is a link"]


def test_pickles_load_only_beside_safetensors_and_never_from_the_view(tmp_path):
    folder = model(tmp_path / "m")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    report = inspect_folder(folder)
    assert report.pickles == ["pytorch_model.bin"] and report.safetensors
    assert refusals(report, trust_pickle=False, any_pickle=False) == []
    assert refusals(report, trust_pickle=False, any_pickle=True)  # uploads refuse every pickle
    with without_pickles(folder, report) as view:
        names = sorted(os.listdir(view))
        assert names == ["config.json", "model.safetensors"]
    assert not os.path.exists(view)
    (folder / "model.safetensors").unlink()
    assert "pickle" in refusals(inspect_folder(folder), trust_pickle=False, any_pickle=False)[0]
    assert refusals(inspect_folder(folder), trust_pickle=True, any_pickle=False) == []


@pytest.mark.parametrize("bad", ["org/name\n", "name\n", "org--name", "a--b/c", "org/na--me", "org/..", "x\x00"])
def test_ids_are_matched_whole(bad):
    with pytest.raises(InvalidInput):
        validate_model_id(bad)


def test_the_cache_spelling_does_not_alias_an_id(tmp_path):
    repo = tmp_path / "cache" / "models--org--secret"
    model(repo / "snapshots" / ("1" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    store = ModelStore(tmp_path / "store", hf_cache=tmp_path / "cache")
    assert store.resolve("org/secret").source == "hf-cache"
    with pytest.raises(InvalidInput):
        store.resolve("org--secret")


def test_a_differently_cased_id_is_not_the_model(tmp_path, monkeypatch):
    """On a case-insensitive file system the folder of ``acme/secret`` also opens as ``ACME/Secret``."""
    model(tmp_path / "store" / "acme" / "secret")
    store = ModelStore(tmp_path / "store")
    real_is_file = type(tmp_path).is_file

    def case_insensitive(path):
        return real_is_file(type(path)(str(path).lower())) if "store" in str(path) else real_is_file(path)

    monkeypatch.setattr(type(tmp_path), "is_file", case_insensitive)
    assert (tmp_path / "store" / "ACME" / "Secret" / "config.json").is_file()  # the file system's view
    assert store.resolve("acme/secret").model_id == "acme/secret"
    with pytest.raises(ModelNotFound):
        store.resolve("ACME/Secret")


def test_a_diffusers_folder_is_a_model_of_its_pipeline_class(tmp_path, tiny_store):
    store = ModelStore(tiny_store)
    ref = store.resolve("tiny/stable-diffusion")
    assert ref.architectures == ("StableDiffusionPipeline",) and ref.model_type == "diffusers"
    assert "tiny/stable-diffusion" in store.model_ids()
    assert inspect_folder(ref.path).problems == []
