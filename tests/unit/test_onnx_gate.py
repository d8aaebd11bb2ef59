"""The fidelity gate holds every export to torch's answers; a refused export serves on torch."""

import asyncio
import copy
import shutil

import numpy as np
import pytest

from deployments.backends import LoadSpec, create_backend, fidelity, onnx_build, onnx_encoder
from deployments.backends.onnx_export import ensure_export, entry_dir, read_manifest, served_variant
from deployments.model_server import ModelServer
from deployments.tasks._heads import SEQUENCE_CLASSIFICATION as HEAD
from hubserve.config.app import AppConfig
from hubserve.errors import ExportUnsupported
from hubserve.repos.store import ModelStore


def test_the_tolerances_catch_what_they_are_for():
    ref = {"logits": np.array([[0.1, 0.9], [0.5, 0.49995]], dtype=np.float32)}
    assert fidelity.compare_outputs(ref, {"logits": ref["logits"] + 1e-5}, "fp32", {"logits": -1})["passed"]
    shifted = fidelity.compare_outputs(ref, {"logits": ref["logits"] + 0.01}, "fp32", {"logits": -1})
    assert not shifted["passed"] and "max difference" in shifted["reason"]
    # a near-tie (within atol) may flip; a clear pick may not
    tie = np.array([[0.1, 0.9], [0.49995, 0.5]], dtype=np.float32)
    assert fidelity.compare_outputs(ref, {"logits": tie}, "int8", {"logits": -1})["argmax_disagreements"] == 0
    flipped = fidelity.compare_outputs(ref, {"logits": ref["logits"][:, ::-1]}, "int8", {"logits": -1})
    assert not flipped["passed"] and flipped["argmax_disagreements"] == 1  # the near-tie row does not count
    nan = fidelity.compare_outputs(ref, {"logits": ref["logits"] * np.nan}, "int8", {})
    assert not nan["passed"] and "not finite" in nan["reason"]
    # padding positions are not compared
    hidden = np.ones((1, 3, 4), dtype=np.float32)
    garbage = hidden.copy()
    garbage[0, 2] = -7
    assert fidelity.compare_outputs({"h": hidden}, {"h": garbage}, "fp32", {}, mask=np.array([[1, 1, 0]]))["passed"]
    assert not fidelity.compare_outputs({"h": hidden}, {"h": garbage}, "fp32", {})["passed"]


def test_greedy_agreement_counts_to_the_first_disagreement():
    assert fidelity.greedy_agreement([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == 1.0
    assert fidelity.greedy_agreement([[1, 2, 3, 4]], [[1, 9, 3, 4]]) == 0.25
    assert fidelity.greedy_agreement([[1, 2], [5, 6]], [[1, 2], [5, 7]]) == 0.75
    assert not fidelity.compare_generations([[1, 2, 3, 4]], [[1, 2, 9, 9]], "fp32")["passed"]


@pytest.fixture
def broken_export(monkeypatch):
    """The encoder exporter writes the graph of a model whose classifier was shifted."""
    real = onnx_encoder.export

    def export(model, folder):
        import torch

        twin = copy.deepcopy(model)
        with torch.no_grad():
            twin.classifier.bias += 0.5
        real(twin, folder)

    monkeypatch.setattr(onnx_encoder, "export", export)


def _config(tmp_path, store):
    return AppConfig.from_args({"model_store": str(store), "onnx_cache": str(tmp_path / "onnx"), "hf_cache": None,
                                "deployment_defaults": {"backend": "auto", "threads": 1}}, env={})


def test_a_broken_export_is_refused_by_the_gate_and_the_model_serves_on_torch(tiny_store, tmp_path, broken_export):
    ref = ModelStore(tiny_store).resolve("tiny/bert-sentiment")
    entry = entry_dir(tmp_path / "onnx", ref.sha, HEAD)
    ensure_export(entry, lambda folder: onnx_build.build(ref.path, folder, HEAD.auto_class, "encoder", HEAD.name, 1))
    manifest = read_manifest(entry)
    assert manifest["choice"] is None
    assert "fp32: logits" in manifest["reason"] and "int8: logits" in manifest["reason"]
    for backend in ("auto", "onnx", "onnx-int8"):
        with pytest.raises(ExportUnsupported, match="fidelity gate|logits"):
            served_variant(manifest, backend)
    spec = LoadSpec(ref.path, HEAD, "text-classification", threads=1, model_id=ref.model_id, revision=ref.sha,
                    cache_dir=tmp_path / "onnx")
    with pytest.raises(ExportUnsupported):
        create_backend("auto", HEAD).load(spec)
    # the model server answers the refusal by loading the model on torch
    for backend in ("auto", "onnx"):
        config = _config(tmp_path, tiny_store).model_dump()
        config["deployment_defaults"]["backend"] = backend
        model = asyncio.run(ModelServer("text-classification", config).load(ref.revision_id))
        assert model.compute_type == "cpu"
        model.__del__()


def test_exports_are_keyed_by_revision(tiny_store, tmp_path):
    """Another revision of a model (its files changed) is exported anew; the first stays."""
    store = tmp_path / "store"
    shutil.copytree(tiny_store / "tiny" / "bert-sentiment", store / "acme" / "bert")
    config = _config(tmp_path, store).model_dump()
    first = ModelStore(store).resolve("acme/bert")
    model = asyncio.run(ModelServer("text-classification", config).load(first.revision_id))
    assert model.compute_type == "cpu+optimized"
    model.__del__()
    (store / "acme" / "bert" / "README.md").write_text("a new revision\n")
    second = ModelStore(store).resolve("acme/bert")
    assert second.sha != first.sha
    model = asyncio.run(ModelServer("text-classification", config).load(second.revision_id))
    model.__del__()
    for ref in (first, second):
        assert read_manifest(entry_dir(tmp_path / "onnx", ref.sha, HEAD))["choice"] in ("fp32", "int8")


def test_a_new_export_drops_the_exports_other_versions_made_of_that_revision_and_head(tmp_path):
    revision = tmp_path / "sha"
    for name in ("base-aaaaaaaaaaaa", "base-extra-aaaaaaaaaaaa", "masked-lm-aaaaaaaaaaaa", "base-notadigest"):
        (revision / name).mkdir(parents=True)
        (revision / name / "model.onnx").write_bytes(b"old")
        (revision / f"{name}.lock").touch()
    entry = ensure_export(revision / "base-bbbbbbbbbbbb", lambda folder: (folder / "model.onnx").write_bytes(b"new"))
    assert read_manifest(entry)["files"] == {"model.onnx": 3}
    left = sorted(p.name for p in revision.iterdir())
    assert "base-aaaaaaaaaaaa" not in left and "base-aaaaaaaaaaaa.lock" not in left  # superseded: gone
    for kept in ("base-extra-aaaaaaaaaaaa", "masked-lm-aaaaaaaaaaaa", "base-notadigest", "base-bbbbbbbbbbbb"):
        assert kept in left  # another head, or not an export of this cache
