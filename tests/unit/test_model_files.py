"""Model folders that could run code or point outside themselves are refused; one id per model."""

import json
import os

import pytest

from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput, ModelNotFound
from hubserve.repos.model_files import inspect_folder, refusals, without_pickles
from hubserve.repos.refs import validate_model_id
from hubserve.repos.store import ModelStore
from hubserve.repos.uploads import check_model_folder

LIMITS = LimitsConfig()


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
                     "`path` points outside"),
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
        check_model_folder(folder, limits=LIMITS)
    # trusting pickles changes nothing
    assert refusals(inspect_folder(folder, LIMITS), trust_pickle=True, any_pickle=False)


def test_links_are_refused_unless_they_stay_in_the_cache_repo(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    folder = model(tmp_path / "m")
    os.symlink(secret, folder / "vocab.txt")
    assert inspect_folder(folder, LIMITS).problems == ["vocab.txt is a link"]
    assert inspect_folder(folder, LIMITS, links_within=folder).problems == ["vocab.txt is a link"]
    repo = tmp_path / "models--o--m"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("{}")
    snap = model(repo / "snapshots" / ("0" * 40))
    os.symlink("../../blobs/abc", snap / "tokenizer_config.json")
    assert inspect_folder(snap, LIMITS, links_within=repo / "blobs").problems == []
    os.symlink(tmp_path, snap / "up")
    assert inspect_folder(snap, LIMITS, links_within=repo / "blobs").problems == ["up is a link"]


def test_pickles_load_only_beside_safetensors_and_never_from_the_view(tmp_path):
    folder = model(tmp_path / "m")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    report = inspect_folder(folder, LIMITS)
    assert report.pickles == ["pytorch_model.bin"] and report.safetensors
    assert refusals(report, trust_pickle=False, any_pickle=False) == []
    assert refusals(report, trust_pickle=False, any_pickle=True)  # uploads refuse every pickle
    with without_pickles(folder, report) as view:
        names = sorted(os.listdir(view))
        assert names == ["config.json", "model.safetensors"]
    assert not os.path.exists(view)
    (folder / "model.safetensors").unlink()
    assert "pickle" in refusals(inspect_folder(folder, LIMITS), trust_pickle=False, any_pickle=False)[0]
    assert refusals(inspect_folder(folder, LIMITS), trust_pickle=True, any_pickle=False) == []


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
    assert inspect_folder(ref.path, LIMITS).problems == []


# -- JSON files, whatever their size or name ------------------------------------------

#: Past the 5 MB up to which JSON files were once the only ones parsed.
PADDING = " " * (5 * 1024**2 + 1)


def padded(data: dict) -> str:
    """``data`` as JSON with megabytes of spaces inside it (still the same JSON to any loader)."""
    text = json.dumps(data)
    return text[:1] + PADDING + text[1:]


def problems_of(folder, limits=LIMITS, **kw):
    return inspect_folder(folder, limits, **kw).problems


@pytest.mark.parametrize("files", [
    {"tokenizer_config.json": padded({"vocab_file": "/proc/self/environ"})},
    {"model.safetensors.index.json": padded({"weight_map": {"w": "../other-model/model.safetensors"}})},
], ids=["padded tokenizer_config", "padded index into a sibling folder"])
def test_a_padded_json_file_is_checked_at_the_default_limits(tmp_path, files):
    folder = model(tmp_path / "m", **files)
    assert (folder / next(iter(files))).stat().st_size > 5 * 1024**2
    [problem] = problems_of(folder)
    assert "points outside the model folder" in problem
    with pytest.raises(InvalidInput, match="points outside"):
        check_model_folder(folder, limits=LIMITS)


def test_a_json_file_past_the_limit_is_refused_not_skipped(tmp_path):
    small = LimitsConfig(max_model_json_bytes=2048)
    vocab = {f"tok{i}": i for i in range(300)}
    folder = model(tmp_path / "m", **{"tokenizer.json": {"model": {"type": "WordPiece", "vocab": vocab}}})
    assert problems_of(folder) == []
    [problem] = problems_of(folder, small)
    assert problem.startswith("tokenizer.json is ") and "limits.max_model_json_bytes" in problem
    with pytest.raises(InvalidInput, match="max_model_json_bytes"):
        check_model_folder(folder, limits=small)


@pytest.mark.parametrize("name, text", [
    ("tokenizer_config.json", '{"vocab_file": "vocab.txt",'),
    ("vocab.json", '{"a": 1} {"b": 2}'),
    ("tokenizer.json", '{"a": NaN}'),
    ("generation_config.json", '\ufeff{"do_sample": true}'),
    ("nested__preprocessor_config.json", '{"x": "\xff"}'),
    ("special_tokens_map.json", "[" * 5000 + "]" * 5000),
])
def test_a_json_file_that_does_not_parse_is_refused(tmp_path, name, text):
    folder = model(tmp_path / "m")
    path = folder / name.replace("__", "/")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text.encode("utf-8") if "\xff" not in text else text.encode("latin-1"))
    [problem] = problems_of(folder)
    assert problem.startswith(name.replace("__", "/")) and ("not valid JSON" in problem or "deeper" in problem)


@pytest.mark.parametrize("name, data, key", [
    ("processor_config.json", {"audio_tokenizer": {"audio_tokenizer_name_or_path": "/proc/self"}},
     "audio_tokenizer_name_or_path"),
    ("sentence_bert_config.json", {"model_args": {"cache_dir": "/root"}}, "cache_dir"),
    ("sentence_bert_config.json", {"tokenizer_name_or_path": "../../secret"}, "tokenizer_name_or_path"),
    ("config.json", {"model_type": "xcodec", "semantic_model_config": {"_name_or_path": "/etc"}}, "_name_or_path"),
    ("preprocessor_config.json", {"stages": [{"feature_path": ["ok.bin", ["../x"]]}]}, "feature_path"),
    ("tokenizer.json", {"model": {"vocab_file": "/proc/self/environ"}}, "vocab_file"),
    ("vocab.json", {"merges_file": "~/merges.txt"}, "merges_file"),
    ("generation_config.json", {"watermarking": {"key_directory": "/var"}}, "key_directory"),
    ("a__b__config.json", {"x": {"data_dirs": {"train": "C:\\data"}}}, "data_dirs"),
    ("tokenizer_config.json", {"spm_file": "sp.model\n"}, "spm_file"),
])
def test_nested_path_fields_must_stay_inside_the_folder(tmp_path, name, data, key):
    folder = model(tmp_path / "m", **{name: data})
    [problem] = problems_of(folder)
    assert f"`{key}` points outside the model folder" in problem


def test_a_path_field_leading_through_a_link_is_refused(tmp_path):
    from hubserve.repos.model_json import Folder

    (tmp_path / "other").mkdir()
    folder = model(tmp_path / "m")
    os.symlink(tmp_path / "other", folder / "sub")
    paths = Folder(folder)
    assert paths.leaves("sub/vocab.txt") and not paths.leaves("vocab.txt")
    repo = tmp_path / "models--o--m"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("x")
    snap = model(repo / "snapshots" / ("0" * 40), **{"tokenizer_config.json": {"vocab_file": "vocab.txt"}})
    os.symlink("../../blobs/abc", snap / "vocab.txt")  # a cache snapshot's file: allowed
    assert problems_of(snap, links_within=repo / "blobs") == []
    assert Folder(snap).leaves("vocab.txt")  # the same link where no cache is allowed


def test_real_files_pass(tmp_path):
    """Tokens are keys (never paths), identity strings are not read, integers of any size parse."""
    vocab = {"vocab_file": 0, "/etc/passwd": 1, "../x": 2, "model_dir": 3}
    folder = model(tmp_path / "m", **{
        "tokenizer.json": {"model": {"type": "BPE", "vocab": vocab, "merges": [["/etc", "passwd"], "../ x"]},
                           "added_tokens": [{"id": 4, "content": "/proc/self/environ", "special": True}]},
        "tokenizer_config.json": {"name_or_path": "/home/someone/checkpoints/run-3", "tokenizer_file": None,
                                  "model_max_length": 1000000000000000019884624838656,
                                  "special_tokens_map_file": "special_tokens_map.json"},
        "config.json": {"model_type": "bert", "_name_or_path": "/home/someone/run-3", "text_config": {}},
        "model.safetensors.index.json": {"metadata": {"total_size": 1},
                                         "weight_map": {"/a.weight": "sub/w.safetensors"}},
        "modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
    })
    assert problems_of(folder) == []


def test_a_problem_after_a_huge_integer_is_found(tmp_path):
    data = {"model_max_length": 1000000000000000019884624838656, "vocab_file": "/proc/self/environ"}
    folder = model(tmp_path / "m", **{"tokenizer_config.json": data})
    assert "`vocab_file` points outside" in problems_of(folder)[0]


def test_remote_code_keys_are_refused_at_any_depth(tmp_path):
    folder = model(tmp_path / "m", **{"config.json": {"model_type": "bert", "text_config": {"auto_map": {"A": "m.M"}}}})
    assert problems_of(folder) == ["config.json has `auto_map`, which names code to import"]


@pytest.mark.parametrize("config, reason", [
    ({"_attn_implementation": "kernels-community/flash-attn"}, "`_attn_implementation` 'kernels-community/flash-attn' names a Hub kernel"),
    ({"text_config": {"attn_implementation": "org/repo:fn"}}, "`attn_implementation` 'org/repo:fn' names a Hub kernel"),
    ({"experts_implementation": "evil/moe"}, "`experts_implementation` 'evil/moe' names a Hub kernel"),
    ({"use_kernels": True}, "`use_kernels` asks for Hub kernels"),
    ({"kernel_config": {"kernel_mapping": {}}}, "has `kernel_config`, which names code"),
])
def test_hub_kernels_are_refused_at_any_depth(tmp_path, config, reason):
    """transformers 5 downloads and runs a kernel from the Hub when a config names one."""
    folder = model(tmp_path / "m", **{"config.json": {"model_type": "llama", **config}})
    assert len(problems_of(folder)) == 1 and reason in problems_of(folder)[0]
    local = model(tmp_path / "ok", **{"config.json": {"model_type": "llama", "_attn_implementation": "sdpa",
                                                      "use_kernels": False, "experts_implementation": "grouped_mm"}})
    assert problems_of(local) == []


@pytest.mark.parametrize("limits, padding, reason", [
    ({}, PADDING, "`vocab_file` points outside"),
    ({"max_model_json_bytes": 4096}, " " * 4096, "limits.max_model_json_bytes"),
], ids=["padded past 5 MB", "past the limit"])
def test_a_pulled_model_is_checked_under_the_configs_limits(tmp_path, monkeypatch, limits, padding, reason):
    from hubserve.config.app import AppConfig
    from hubserve.repos.hub import puller_for
    from hubserve.repos.upstream import Remote

    config = AppConfig.from_args({"data_dir": str(tmp_path / "data"), "limits": limits})
    puller = puller_for(config)
    remote = Remote("acme/environ", "a" * 40, False, "fill-mask", "transformers", (("model.safetensors", 1),))

    def fetch(remote, progress_bars):
        snapshot = puller._incoming(remote.model_id) / "snapshots" / remote.sha
        model(snapshot, **{"tokenizer_config.json": "{" + padding + '"vocab_file": "/proc/self/environ"}'})

    monkeypatch.setattr(puller, "_fetch", fetch)
    with pytest.raises(InvalidInput, match=reason):
        puller.pull(remote.model_id, remote)
    assert puller.pulled_sha(remote.model_id) is None


def test_a_relative_path_naming_a_file_of_the_working_directory_is_refused(tmp_path, monkeypatch):
    """transformers opens a tokenizer config's ``vocab_file`` as written: relative to the process's
    working directory, where the server's own files may be (``./data`` by default)."""
    server = tmp_path / "server"
    (server / "data").mkdir(parents=True)
    (server / "data" / "auth.sqlite").write_text("tokens")
    monkeypatch.chdir(server)
    decoy = {"tokenizer_config.json": {"vocab_file": "data/auth.sqlite"}, "data__auth.sqlite": "x"}
    [problem] = problems_of(model(tmp_path / "m", **decoy))
    assert "`vocab_file` points outside the model folder ('data/auth.sqlite')" in problem
    assert problems_of(model(tmp_path / "ok", **{"tokenizer_config.json": {"vocab_file": "vocab.txt"}})) == []
