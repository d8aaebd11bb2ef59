"""The PyTorch backend on a tiny model (no Ray)."""

import gc
import json
import sys
import weakref

import pytest

from deployments.backends import LoadSpec, create_backend
from deployments.loading import LoadedModel
from deployments.tasks import get_task, infer_task
from deployments.tasks._heads import BASE, CAUSAL_LM, MASKED_LM
from hubserve.errors import InvalidInput, ModelLoadError, ModelUnsupported
from hubserve.repos.store import ModelStore


@pytest.fixture(scope="module")
def store(tiny_store):
    return ModelStore(tiny_store)


def test_eviction_really_frees_the_weights(store, tiny_models):
    ref = store.resolve(tiny_models["fill-mask"])
    backend = create_backend("torch")
    backend.load(LoadSpec(ref.path, MASKED_LM, "fill-mask", threads=1))
    weights = weakref.ref(backend.model)
    model = LoadedModel(ref, backend, None)
    model.__del__()  # what the multiplexer calls on eviction
    gc.collect()
    assert weights() is None and model.backend is None


def test_generation_clamps_to_the_position_table(store, tiny_models):
    ref = store.resolve(tiny_models["text-generation"])
    backend = create_backend("torch")
    backend.load(LoadSpec(ref.path, CAUSAL_LM, threads=1))
    gen = backend.generate("hello", {"max_new_tokens": 1000, "do_sample": False})[0]
    assert gen.generated_tokens <= 128 - gen.prompt_tokens
    with pytest.raises(InvalidInput, match="prompt has"):
        backend.generate("word " * 200, {"max_new_tokens": 5})


def test_cuda_without_a_gpu_is_a_load_error(store, tiny_models):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here; this checks the error on machines without one")
    ref = store.resolve(tiny_models["fill-mask"])
    with pytest.raises(ModelLoadError, match="no GPU"):
        create_backend("torch").load(LoadSpec(ref.path, MASKED_LM, "fill-mask", device="cuda"))


def test_a_folder_transformers_cannot_load_is_the_models_400(tmp_path):
    """A broken folder, or an architecture this transformers does not know, names the model type
    and transformers' version, as a 400: the model is at fault, not the server."""
    import transformers

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelUnsupported, match=f"no model type.*transformers {transformers.__version__}") as err:
        create_backend("torch").load(LoadSpec(tmp_path, MASKED_LM, "fill-mask"))
    assert err.value.status_code == 400
    (tmp_path / "config.json").write_text('{"model_type": "qwen9_text", "architectures": ["Qwen9ForCausalLM"]}')
    with pytest.raises(ModelUnsupported, match=f"`qwen9_text`, which transformers {transformers.__version__} does not know"):
        create_backend("torch").load(LoadSpec(tmp_path, CAUSAL_LM))


def test_float16_is_a_gpu_option(store, tiny_models, tmp_path):
    ref = store.resolve(tiny_models["sentence-similarity"])
    with pytest.raises(ModelLoadError, match="float16 runs on device cuda"):
        create_backend("torch").load(LoadSpec(ref.path, BASE, dtype="float16"))
    with pytest.raises(ModelLoadError, match="torch backend"):
        create_backend("onnx").load(LoadSpec(ref.path, BASE, cache_dir=tmp_path, dtype="float16"))


def test_pickle_only_weights_are_refused_at_load(tmp_path):
    from deployments.loading import check_model_files
    from hubserve.config.limits import LimitsConfig

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    ref = ModelStore(tmp_path.parent).describe_folder("o/m", tmp_path, "store", "0" * 40, 2)
    with pytest.raises(ModelLoadError, match="pickle"):
        check_model_files(ref, trust_pickle=False, limits=LimitsConfig())
    assert check_model_files(ref, trust_pickle=True, limits=LimitsConfig()).pickles == ["pytorch_model.bin"]
    (tmp_path / "model.safetensors").write_bytes(b"\0")
    assert check_model_files(ref, trust_pickle=False, limits=LimitsConfig()).safetensors


def test_a_generation_stops_at_its_deadline(store, tiny_models):
    import time

    from hubserve.errors import ServiceUnavailable

    ref = store.resolve(tiny_models["text-generation"])
    backend = create_backend("torch")
    backend.load(LoadSpec(ref.path, CAUSAL_LM, threads=1))
    params = {"max_new_tokens": 100, "min_new_tokens": 100, "num_beams": 8, "do_sample": False}
    start = time.perf_counter()
    full = backend.generate("hello", params)[0]
    took = time.perf_counter() - start
    assert full.generated_tokens == 100
    cut = backend.generate("hello", dict(params, deadline=time.time() + took / 5))[0]
    assert cut.generated_tokens < 100 and cut.finish_reason == "length"
    with pytest.raises(ServiceUnavailable, match="timed out"):
        backend.generate("hello", dict(params, deadline=time.time() - 1))


def test_closing_a_stream_stops_its_generation(store, tiny_models, monkeypatch):
    import threading

    from deployments.backends import torch_support

    checks = []
    real = torch_support.Cancelled.__call__
    monkeypatch.setattr(torch_support.Cancelled, "__call__",
                        lambda self, ids, scores, **kw: checks.append(self.event.is_set()) or real(self, ids, scores))
    ref = store.resolve(tiny_models["text-generation"])
    backend = create_backend("torch")
    backend.load(LoadSpec(ref.path, CAUSAL_LM, threads=1))
    events = backend.stream("hello", {"max_new_tokens": 100, "min_new_tokens": 100, "do_sample": False})
    next(events)
    events.close()
    for thread in [t for t in threading.enumerate() if t.name == "hubserve-generate"]:
        thread.join(timeout=30)
    assert checks[-1] is True and len(checks) < 100


def test_a_timm_model_without_timm_is_said_plainly(tmp_path, monkeypatch):
    folder = tmp_path / "acme" / "resnet-timm"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 3,
                                                    "pretrained_cfg": {"input_size": [3, 224, 224]}}))
    (folder / "model.safetensors").write_bytes(b"\0")
    ref = ModelStore(tmp_path).resolve("acme/resnet-timm")
    assert ref.architectures == ("TimmWrapperForImageClassification",) and infer_task(ref) == "image-classification"
    monkeypatch.setitem(sys.modules, "timm", None)  # as here: timm cannot import beside the CPU torch
    task = get_task("image-classification")
    with pytest.raises(ModelLoadError, match=r"resnet-timm is a timm model \(resnet18\): serving it needs the timm"):
        create_backend("torch").load(LoadSpec(ref.path, task.head_for(ref), pipeline=task.pipeline,
                                              preprocessors=task.preprocessors))


@pytest.mark.parametrize("labels, problem, fn, top_k", [
    (1000, None, None, 5), (1000, None, "sigmoid", 3), (1000, None, "none", 2000), (4, "regression", None, 4),
    (1, None, None, 5), (6, "multi_label_classification", None, 2), (6, "single_label_classification", "softmax", 6),
])
def test_the_image_classifier_answers_as_transformers_pipeline(labels, problem, fn, top_k):
    """The image classification pipeline the backend builds (labels read once) answers exactly as
    transformers' own, ties in label order included."""
    from types import SimpleNamespace

    import torch
    import transformers

    from deployments.backends.torch_support import ImageClassificationPipeline

    config = transformers.PretrainedConfig(id2label={i: f"label {i}" for i in range(labels)}, problem_type=problem)
    logits = torch.randn(1, labels, generator=torch.Generator().manual_seed(labels))
    logits[0, : labels // 2] = logits[0, labels // 2 :][: labels // 2]  # tied scores
    pipe = SimpleNamespace(model=SimpleNamespace(config=config))
    kwargs = {"top_k": top_k, **({"function_to_apply": fn} if fn else {})}
    ours = ImageClassificationPipeline.postprocess(pipe, {"logits": logits}, **kwargs)
    theirs = transformers.ImageClassificationPipeline.postprocess(pipe, {"logits": logits}, **kwargs)
    assert ours == theirs and len(ours) == min(top_k, labels)
