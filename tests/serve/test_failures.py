"""Broken models fail clearly and never take a replica down."""

import shutil

import pytest


def test_corrupt_weights_give_the_models_400_and_the_replica_keeps_serving(http, server, tiny_models):
    import transformers

    good = tiny_models["text-classification"]
    target = server.store / "broken" / "weights"
    shutil.copytree(server.store / good, target)
    (target / "model.safetensors").write_bytes(b"this is not a safetensors file")
    resp = http.post("/models/broken/weights", json={"inputs": "hello"})
    assert resp.status_code == 400  # the folder is at fault, not the server
    message = resp.json()["error"]
    assert f"(model type `bert`) cannot be loaded by transformers {transformers.__version__}" in message
    assert resp.json()["error_type"] == "load"
    assert http.post(f"/models/{good}", json={"inputs": "hello"}).status_code == 200


def test_an_internal_fault_is_a_generic_500_and_the_replica_keeps_serving(http, server, tiny_models):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tests.tiny_models import wordpiece_tokenizer

    # NOTE(hubserve): a tokenizer with more ids than the embedding table: forward fails inside torch.
    tokenizer = wordpiece_tokenizer()
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=6, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, pad_token_id=0))
    folder = server.store / "broken" / "vocab"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    resp = http.post("/models/broken/vocab", json={"inputs": "hello world"})
    assert resp.status_code == 500
    assert resp.json() == {"error": "unknown error", "error_type": "backend"}
    good = tiny_models["text-classification"]
    assert http.post(f"/models/{good}", json={"inputs": ["a", "b"]}).status_code == 200


def test_a_model_without_a_settled_task_is_a_400(http, server):
    folder = server.store / "vision" / "only"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["FooForBarring"]}')
    resp = http.post("/models/vision/only", content=b"x")
    assert resp.status_code == 400 and "Cannot tell the task" in resp.json()["error"]


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"inputs": {"a": [1]}}', b'{"inputs": "x", "parameters": {"top_k": 1e99}}',
                                  b'{"inputs": "' + "\u00e9".encode() * 5000 + b'"}'])
def test_odd_bodies_never_give_a_500(http, tiny_models, body):
    for task in ("text-classification", "fill-mask", "question-answering", "text-generation"):
        resp = http.post(f"/models/{tiny_models[task]}", content=body)
        assert resp.status_code in (200, 400), (task, resp.status_code, resp.text)
