"""ONNX Runtime (fp32 and int8) against PyTorch on the tiny models (no Ray).

Tolerances: fp32 exports are near-identical to torch (scores within 1e-4,
embedding cosine > 0.9999, same greedy generations); dynamic int8 (MatMul,
per-channel) keeps scores within 0.02 and embedding cosine above 0.99.
"""

import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from deployments.backends import Head, LoadSpec, create_backend, resolve_backend
from deployments.backends.onnx_export import MANIFEST, entry_dir, is_complete, read_manifest
from deployments.loading import LoadedModel
from deployments.tasks import get_task, infer_task
from deployments.tasks._heads import BASE, CAUSAL_LM, SEQUENCE_CLASSIFICATION
from hubserve.errors import ExportUnsupported, InvalidInput
from hubserve.repos.store import ModelStore
from deployments.payloads import decode_body


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runner(tiny_store, tmp_path_factory):
    store = ModelStore(tiny_store)
    cache = tmp_path_factory.mktemp("onnx-cache")

    def run(model_id, body, backend, task=None):
        ref = store.resolve(model_id)
        t = get_task(task or infer_task(ref))
        b = create_backend(backend, t.head)
        b.load(LoadSpec(ref.path, t.head, t.pipeline, threads=1, model_id=model_id, revision=ref.sha,
                        cache_dir=cache))
        out = t.run(LoadedModel(ref, b, t.prepare(ref, b)), [t.parse(decode_body(orjson.dumps(body)))])[0]
        if isinstance(out, Exception):
            raise out
        return orjson.loads(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)), b.compute_type

    run.cache = cache
    run.store = store
    return run


def scores(output):
    """Every number in an output, in order."""
    if isinstance(output, dict):
        return [x for k in sorted(output) for x in scores(output[k]) if k not in ("start", "end", "token", "index")]
    if isinstance(output, list):
        return [x for item in output for x in scores(item)]
    return [float(output)] if isinstance(output, float) else []


def shape_of(output):
    """An output with its scores blanked out."""
    if isinstance(output, dict):
        return {k: shape_of(v) for k, v in output.items()}
    if isinstance(output, list):
        return [shape_of(x) for x in output]
    return None if isinstance(output, float) else output


CLASSIFIERS = [
    ("tiny/bert-sentiment", {"inputs": ["I love it", "awful"]}, None),
    ("tiny/bert-ner", {"inputs": "My name is Sarah and I live in Paris"}, None),
    ("tiny/bert-qa", {"inputs": {"question": "Where?", "context": "I live in Berlin"}, "parameters": {"top_k": 2}}, None),
    ("tiny/bert-mlm", {"inputs": "Paris is the [MASK] of France."}, None),
    ("tiny/bert-nli", {"inputs": "I love it", "parameters": {"candidate_labels": "good,bad"}}, None),
    ("tiny/sentence-bert", {"inputs": {"source_sentence": "a man eats", "sentences": ["a man eats food", "horse"]}}, None),
]


def _int8_served(runner, model_id, task, head):
    ref = runner.store.resolve(model_id)
    manifest = read_manifest(entry_dir(runner.cache, ref.sha, head))
    return manifest["variants"]["int8"]["passed"]


@pytest.mark.parametrize("model_id,body,task", CLASSIFIERS)
def test_scores_match_torch(runner, model_id, body, task):
    reference, ctype = runner(model_id, body, "torch", task)
    assert ctype == "cpu"
    out, ctype = runner(model_id, body, "onnx", task)
    assert ctype == "cpu+optimized"
    assert np.allclose(scores(out), scores(reference), atol=1e-4)
    assert shape_of(out) == shape_of(reference)  # same labels, words, spans and nesting
    t = get_task(task or infer_task(runner.store.resolve(model_id)))
    if _int8_served(runner, model_id, task, t.head):
        out, ctype = runner(model_id, body, "onnx-int8", task)
        assert ctype == "cpu+optimized" and np.allclose(scores(out), scores(reference), atol=0.02)
    else:
        with pytest.raises(ExportUnsupported, match="int8 ONNX export did not pass the fidelity gate"):
            runner(model_id, body, "onnx-int8", task)


@pytest.mark.parametrize("model_id,task,min_cos", [("tiny/sentence-bert", "feature-extraction", 0.99),
                                                    ("tiny/bert-base", "feature-extraction", 0.99)])
def test_embeddings_match_torch(runner, model_id, task, min_cos):
    body = {"inputs": ["hello world", "Paris is the capital of France."]}
    reference = np.concatenate([np.array(x).reshape(-1, 32) for x in runner(model_id, body, "torch", task)[0]])
    for backend, bound in (("onnx", 0.9999), ("onnx-int8", min_cos), ("auto", min_cos)):
        if backend == "onnx-int8" and not _int8_served(runner, model_id, task, BASE):
            continue
        out = np.concatenate([np.array(x).reshape(-1, 32) for x in runner(model_id, body, backend, task)[0]])
        cos = (out * reference).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(reference, axis=1))
        assert cos.min() > bound, (backend, cos.min())


@pytest.mark.parametrize("model_id,body", [
    ("tiny/gpt2", {"inputs": "The quick brown", "parameters": {"max_new_tokens": 6}}),
    ("tiny/bart", {"inputs": "hello world", "parameters": {"max_new_tokens": 6}}),
    ("tiny/bart-summarizer", {"inputs": "the cat sat on the mat", "parameters": {"max_new_tokens": 6}}),
])
def test_greedy_generation_matches_torch(runner, model_id, body):
    out, ctype = runner(model_id, body, "onnx")
    assert ctype == "cpu+optimized" and out == runner(model_id, body, "torch")[0]


def test_auto_serves_onnx_where_the_head_has_an_export_family():
    assert resolve_backend("auto", SEQUENCE_CLASSIFICATION) == "auto"
    assert resolve_backend("auto", CAUSAL_LM) == "auto"
    assert resolve_backend("torch", BASE) == "torch"
    assert resolve_backend("onnx-int8", BASE) == "onnx-int8"
    assert resolve_backend("auto", BASE, device="cuda") == "torch"
    # a head without an export runs on torch
    assert resolve_backend("auto", Head("plain", "AutoModel")) == "torch"


def test_embedding_models_run_on_onnx_without_torch(tiny_store, tmp_path):
    """A fresh process embeds with the onnx backend (exported by a child process) and never
    imports torch or transformers; the answer matches torch's."""
    script = f"""
import sys, json
from deployments.backends import LoadSpec, create_backend
from deployments.tasks._heads import BASE
from hubserve.repos.store import ModelStore
ref = ModelStore({str(tiny_store)!r}).resolve("tiny/sentence-bert")
b = create_backend("onnx", BASE)
b.load(LoadSpec(ref.path, BASE, threads=1, model_id=ref.model_id, revision=ref.sha, cache_dir=__import__("pathlib").Path({str(tmp_path)!r})))
hidden, mask = b.embed(["hello world", "Paris is the capital of France."], truncate=True)
print(json.dumps({{"type": type(b).__name__, "hidden": hidden.tolist(), "mask": mask.tolist(),
                  "loaded": sorted(m for m in ("torch", "transformers") if m in sys.modules)}}))
"""
    import subprocess, sys
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert out["type"] == "OrtEmbedder" and out["loaded"] == []
    ref = ModelStore(tiny_store).resolve("tiny/sentence-bert")
    torch_backend = create_backend("torch")
    torch_backend.load(LoadSpec(ref.path, BASE, threads=1))
    hidden, mask = torch_backend.embed(["hello world", "Paris is the capital of France."], truncate=True)
    assert out["mask"] == mask.tolist()
    assert np.allclose(np.array(out["hidden"]), hidden, atol=1e-4)


def test_the_torch_free_backend_keeps_the_tokenizer_rules(runner):
    """Truncation side, the model's token limit and `truncate: false` as transformers does them."""
    ref = runner.store.resolve("tiny/sentence-bert")
    fast, slow = create_backend("onnx", BASE), create_backend("torch")
    fast.load(LoadSpec(ref.path, BASE, threads=1, model_id=ref.model_id, revision=ref.sha, cache_dir=runner.cache))
    slow.load(LoadSpec(ref.path, BASE, threads=1))
    assert (fast.max_input_tokens, fast.vocab_size) == (slow.max_input_tokens, slow.vocab_size)
    long_text = " ".join(["paris"] * 40) + " end"
    for side in ("left", "right"):
        a = fast.embed([long_text, "short"], truncate=True, max_length=8, truncation_side=side)
        b = slow.embed([long_text, "short"], truncate=True, max_length=8, truncation_side=side)
        assert a[1].tolist() == b[1].tolist() and np.allclose(a[0], b[0], atol=1e-4)
    with pytest.raises(InvalidInput, match="limit of 8"):
        fast.embed([long_text], truncate=False, max_length=8)


def test_an_architecture_that_cannot_be_exported_is_refused_with_its_reason_and_kept(tmp_path):
    """The export child's failure (here: a model type transformers does not know) is an
    ExportUnsupported naming it, which the model server answers by loading the model on torch;
    the failure is kept in the cache, so the next load does not export again."""
    from deployments.backends.onnx_export import run_export

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    spec = LoadSpec(folder, SEQUENCE_CLASSIFICATION, model_id="x/y", revision="r", cache_dir=tmp_path / "c")
    with pytest.raises(ExportUnsupported, match="no-such-architecture"):
        create_backend("auto", SEQUENCE_CLASSIFICATION).load(spec)
    manifest = run_export(spec)  # from the cache: no child this time
    assert manifest["choice"] is None and "no-such-architecture" in manifest["reason"]


@pytest.mark.parametrize("bound, reason", [
    ({"export_timeout_s": 1.0}, "took more than 1s (limits.export_timeout_s)"),
    # NOTE(hubserve): below the config's floor (1 GiB), which an export fits in when few threads
    # run; libtorch_cpu.so alone maps over 400 MB, so an import fails under 256 MiB, always.
    ({"export_memory_bytes": 256 * 1024**2}, "Error: "),
])
def test_an_export_past_its_time_or_memory_bound_is_stopped_and_kept_as_failed(tiny_store, tmp_path, bound, reason):
    """The export child is bounded by ``limits.export_timeout_s`` and ``limits.export_memory_bytes``:
    past either it is stopped, the failure is kept, and the model serves on torch."""
    from deployments.backends.onnx_export import run_export
    from hubserve.config.limits import LimitsConfig

    spec = LoadSpec(tiny_store / "tiny" / "bert-sentiment", SEQUENCE_CLASSIFICATION, model_id="tiny/bert-sentiment",
                    revision="r1", cache_dir=tmp_path / "c", limits=LimitsConfig.model_construct(**bound))
    started = time.monotonic()
    try:
        failed = run_export(spec)
    except ExportUnsupported as exc:  # out of address space, a library may abort: a signal, not kept
        assert "export_memory_bytes" in bound and "died of signal" in exc.message
    else:
        assert failed["choice"] is None and reason in failed["reason"]
        assert run_export(spec) == failed  # kept: the next load does not export again
    assert time.monotonic() - started < 60
    with pytest.raises(ExportUnsupported):
        create_backend("auto", SEQUENCE_CLASSIFICATION).load(spec)  # the model server then loads it on torch


def test_exports_are_cached_and_broken_entries_rebuilt(runner):
    body = {"inputs": "cache me"}
    runner("tiny/bert-sentiment", body, "onnx")
    ref = runner.store.resolve("tiny/bert-sentiment")
    entry = entry_dir(runner.cache, ref.sha, SEQUENCE_CLASSIFICATION)
    assert is_complete(entry)
    stamp = (entry / "model.onnx").stat().st_mtime_ns
    runner("tiny/bert-sentiment", body, "onnx")
    assert (entry / "model.onnx").stat().st_mtime_ns == stamp  # reused, not exported again
    (entry / "model.onnx").write_bytes(b"truncated")
    assert not is_complete(entry)
    out, _ = runner("tiny/bert-sentiment", body, "onnx")
    assert is_complete(entry) and len(out[0]) == 2
    (entry / MANIFEST).unlink()
    runner("tiny/bert-sentiment", body, "onnx")
    assert is_complete(entry)


def test_an_export_process_killed_by_a_signal_is_not_kept(tiny_store, tmp_path, monkeypatch):
    """A crash says nothing about the model: the load serves on torch and the next one exports again."""
    from deployments.backends import onnx_export

    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    monkeypatch.setattr(onnx_export, "export_command", lambda spec, entry: crash)
    spec = LoadSpec(tiny_store / "tiny" / "bert-sentiment", SEQUENCE_CLASSIFICATION, model_id="tiny/bert-sentiment",
                    revision="r2", cache_dir=tmp_path / "c")
    with pytest.raises(ExportUnsupported, match="died of signal 11"):
        onnx_export.run_export(spec)
    assert read_manifest(entry_dir(tmp_path / "c", "r2", SEQUENCE_CLASSIFICATION)) is None  # not kept
    monkeypatch.undo()
    assert onnx_export.run_export(spec)["choice"] in ("fp32", "int8")  # the next load exports
