"""Many models, few replicas: 20 tiny models of one task over two replicas whose memory budget
holds 12 each. Every model is loaded once, on one replica, and its later requests (concurrent
ones included) go to the replica that holds it. One hot model, more requests in flight than
``target_ongoing_requests``, spreads to the second replica."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest

from tests.conftest import server_args

MODELS = 20
PER_REPLICA = 12


def two_replicas(server, tiny_store, tmp_path_factory, name: str, classification: dict, autoscaling: dict):
    """An application ``name`` serving only text-classification, on two replicas, at ``/name``."""
    from ray import serve

    from serve_app.app import build_app

    args = server_args(tiny_store)
    args.update(data_dir=str(tmp_path_factory.mktemp(name) / "data"), models={},
                serve_tasks=["text-classification"], ingress={"num_cpus": 0, "num_replicas": 1},
                tasks={"text-classification": classification},
                deployment_defaults={**args["deployment_defaults"],
                                     "autoscaling": {"min_replicas": 2, "max_replicas": 2, **autoscaling}})
    serve.run(build_app(args), name=name, route_prefix=f"/{name}")
    return f"{server.url}/{name}"


@pytest.fixture(scope="module")
def many(server, tiny_store, tiny_models, tmp_path_factory):
    from ray import serve

    source = tiny_models["text-classification"]
    weights = (tiny_store / source / "model.safetensors").stat().st_size
    ids = [f"many/model-{i:02d}" for i in range(MODELS)]
    for model_id in ids:
        server.copy_model(source, model_id)
    yield two_replicas(server, tiny_store, tmp_path_factory, "many",
                       {"max_models_per_replica": MODELS, "max_model_bytes": int(weights * (PER_REPLICA + 0.5))},
                       {}), ids
    serve.delete("many")


def test_twenty_models_spread_over_two_replicas_and_stay_where_they_were_loaded(many, server):
    url, ids = many
    body = {"inputs": "a fine day", "options": {"use_cache": False}}
    shas = {}
    with httpx.Client(timeout=120) as client:
        for model_id in ids:  # first requests, one at a time: each loads its model once
            r = client.post(f"{url}/models/{model_id}", json=body)
            assert r.status_code == 200, (model_id, r.text)
            shas[model_id] = r.headers["x-sha"]

    failures: list[str] = []

    def rounds(offset: int) -> None:
        with httpx.Client(timeout=120) as client:
            for n in range(3 * MODELS):
                model_id = ids[(n + offset) % MODELS]
                r = client.post(f"{url}/models/{model_id}", json=body)
                if r.status_code != 200:
                    failures.append(f"{model_id}: {r.status_code} {r.text[:100]}")

    threads = [threading.Thread(target=rounds, args=(k * 5,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]

    replicas = {}
    for model_id in ids:
        status = server.replica_status("text-classification", f"{model_id}@{shas[model_id]}", app="many")
        assert status["loaded"], model_id
        replicas[status["pid"]] = status
    assert len(replicas) == 2, "the models sit on both replicas"
    held = Counter(revision for status in replicas.values() for revision in status["models"])
    assert set(held) == {f"{model_id}@{sha}" for model_id, sha in shas.items()}
    assert all(count == 1 for count in held.values()), "a model is held by one replica"
    assert all(len(status["models"]) <= PER_REPLICA for status in replicas.values()), "within the memory budget"
    print(f"\n{MODELS} models over 2 replicas: {[len(s['models']) for s in replicas.values()]} held, "
          f"{[s['served'] for s in replicas.values()]} requests served")
    # every model was loaded exactly once: no request went to a replica that did not hold it
    assert sum(status["all_loads"] for status in replicas.values()) == MODELS, replicas


@pytest.fixture(scope="module")
def hot(server, tiny_store, tiny_models, tmp_path_factory):
    from ray import serve

    yield two_replicas(server, tiny_store, tmp_path_factory, "hot", {"max_batch_size": 1},
                       {"target_ongoing_requests": 1}), tiny_models["text-classification"]
    serve.delete("hot")


def test_a_hot_model_spreads_to_the_second_replica_above_the_target(hot):
    from ray import serve

    url, model_id = hot
    body = {"inputs": "a fine day", "options": {"use_cache": False}}
    first = httpx.post(f"{url}/models/{model_id}", json=body, timeout=120)
    assert first.status_code == 200, first.text
    revision = f"{model_id}@{first.headers['x-sha']}"
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            for _ in range(40):
                r = http.post(f"{url}/models/{model_id}", json=body)
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:100]}")

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]

    handle = serve.get_deployment_handle("text-classification", app_name="hot")
    replicas = {}
    for _ in range(40):  # no model id: any replica answers
        status = handle.model_status.remote(revision).result()
        replicas[status["pid"]] = status
        if len(replicas) == 2:
            break
    assert len(replicas) == 2, "two replicas run"
    print(f"\nhot model over 2 replicas: {[s['served'] for s in replicas.values()]} requests served")
    assert all(status["loaded"] and status["served"] > 20 for status in replicas.values()), replicas
