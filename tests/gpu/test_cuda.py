"""The GPU paths: ``device: cuda`` on torch (fp32 and fp16) and on ONNX Runtime's CUDA provider.

They need a CUDA GPU and skip, saying so, where there is none (CI, laptops);
``bench/gpu_check.sh`` runs them plus a short timing on a GPU machine.
"""

import numpy as np
import pytest
import torch

from deployments.backends import LoadSpec, create_backend
from deployments.loading import LoadedModel
from deployments.tasks import get_task
from deployments.tasks.base import Payload
from hubserve.errors import ModelLoadError
from hubserve.repos.store import ModelStore

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU visible here: run bench/gpu_check.sh on a GPU machine")


def loaded(store_root, model_id, task_name, backend, device, dtype="float32", tmp=None):
    ref = ModelStore(store_root).resolve(model_id)
    task = get_task(task_name)
    engine = create_backend(backend)
    engine.load(LoadSpec(path=ref.path, head=task.head, pipeline=task.pipeline, device=device,
                         threads=1, model_id=model_id, revision=ref.sha, cache_dir=tmp, dtype=dtype))
    return task, LoadedModel(ref, engine, task.prepare(ref, engine))


def embed(task, model, text="a sentence on the GPU"):
    return np.asarray(task.run(model, [task.parse(Payload(inputs=text))])[0], dtype=np.float32)


def cosine(a, b):
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("dtype, floor", [("float32", 0.9999), ("float16", 0.99)])
def test_torch_on_cuda_matches_cpu(tiny_store, dtype, floor):
    task, cpu = loaded(tiny_store, "tiny/sentence-bert", "feature-extraction", "torch", "cpu")
    _, gpu = loaded(tiny_store, "tiny/sentence-bert", "feature-extraction", "torch", "cuda", dtype)
    assert gpu.compute_type == "gpu"
    assert cosine(embed(task, cpu), embed(task, gpu)) >= floor


def test_generation_on_cuda(tiny_store):
    task, model = loaded(tiny_store, "tiny/gpt2", "text-generation", "torch", "cuda")
    out = task.run(model, [task.parse(Payload(inputs="hello", parameters={"max_new_tokens": 5}))])[0]
    assert isinstance(out, list) and isinstance(out[0]["generated_text"], str)


def test_onnx_on_the_cuda_provider(tiny_store, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ModelLoadError, match="CUDAExecutionProvider"):
            loaded(tiny_store, "tiny/sentence-bert", "feature-extraction", "onnx", "cuda", tmp=tmp_path)
        pytest.skip("onnxruntime here is the CPU build (install onnxruntime-gpu for the CUDA provider)")
    task, cpu = loaded(tiny_store, "tiny/sentence-bert", "feature-extraction", "onnx", "cpu", tmp=tmp_path)
    _, gpu = loaded(tiny_store, "tiny/sentence-bert", "feature-extraction", "onnx", "cuda", tmp=tmp_path)
    assert gpu.compute_type == "gpu"
    assert cosine(embed(task, cpu), embed(task, gpu)) >= 0.9999


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_text_to_image_on_cuda(tiny_store, dtype):
    from PIL import Image
    import io

    ref = ModelStore(tiny_store).resolve("tiny/stable-diffusion")
    task = get_task("text-to-image")
    engine = create_backend("torch", task.head)
    engine.load(LoadSpec(path=ref.path, head=task.head, device="cuda", dtype=dtype, model_id=ref.model_id,
                         revision=ref.sha, preprocessors=task.preprocessors))
    assert engine.compute_type == "gpu"
    request = task.parse(Payload(inputs="a red cat", parameters={"num_inference_steps": 2}))
    request.media_type = "image/png"
    out = task.run(LoadedModel(ref, engine, None), [request])[0]
    assert Image.open(io.BytesIO(out)).size == (16, 16)
