"""Faults survived: a model replica killed (by its PID) in the middle of a load run; what the
ingress says of a model after its replica restarted or scaled down (the replicas' view decides)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.conftest import server_args

TIMEOUT_S = 30


@pytest.fixture(scope="module")
def faults(server, tiny_store, tmp_path_factory):
    """An application whose text-classification deployment runs two replicas."""
    from ray import serve

    from serve_app.app import build_app

    args = server_args(tiny_store)
    args.update(data_dir=str(tmp_path_factory.mktemp("faults") / "data"), models={},
                serve_tasks=["text-classification"], request_timeout_s=TIMEOUT_S,
                ingress={"num_cpus": 0, "num_replicas": 1},
                deployment_defaults={**args["deployment_defaults"], "autoscaling": {"min_replicas": 2,
                                                                                    "max_replicas": 2}})
    serve.run(build_app(args), name="faults", route_prefix="/faults")
    yield f"{server.url}/faults"
    serve.delete("faults")


@pytest.fixture(scope="module")
def replicas(server, tiny_store, tmp_path_factory):
    """An application with the hosted API's no-wait default: text-classification on one replica,
    fill-mask scaled to zero when idle."""
    from ray import serve

    from serve_app.app import build_app

    args = server_args(tiny_store)
    args.update(data_dir=str(tmp_path_factory.mktemp("replicas") / "data"), models={},
                serve_tasks=["text-classification", "fill-mask"], request_timeout_s=TIMEOUT_S,
                cold_start={"wait_by_default": False, "max_wait_s": 60},
                ingress={"num_cpus": 0, "num_replicas": 1},
                tasks={"fill-mask": {"autoscaling": {"min_replicas": 0, "max_replicas": 1, "upscale_delay_s": 0,
                                                     "downscale_delay_s": 2}}})
    serve.run(build_app(args), name="replicas", route_prefix="/replicas")
    with httpx.Client(base_url=f"{server.url}/replicas", timeout=TIMEOUT_S + 30) as client:
        yield client
    serve.delete("replicas")


def running_replicas(app: str = "faults", task: str = "text-classification") -> int:
    from ray import serve

    deployment = serve.status().applications[app].deployments[task]
    return int(deployment.replica_states.get("RUNNING", 0))


def state_becomes(client, model_id: str, state: str, timeout: float = 60) -> float:
    """Seconds until ``/status`` says ``state``."""
    start = time.monotonic()
    while (now := client.get(f"/status/{model_id}").json()["state"]) != state:
        assert time.monotonic() - start < timeout, f"{model_id} stayed {now}"
        time.sleep(0.1)
    return time.monotonic() - start


NO_WAIT = {"x-wait-for-model": "0", "x-use-cache": "0"}
WAIT = {"x-wait-for-model": "1", "x-use-cache": "0"}


def test_after_a_replica_restart_its_models_are_cold(replicas, server, tiny_models):
    model_id = tiny_models["text-classification"]
    body = {"inputs": "great"}
    first = replicas.post(f"/models/{model_id}", json=body, headers=WAIT)
    assert first.status_code == 200
    assert replicas.get(f"/status/{model_id}").json()["state"] == "Loaded"
    assert replicas.post(f"/models/{model_id}", json=body, headers=NO_WAIT).status_code == 200
    revision = f"{model_id}@{first.headers['x-sha']}"
    victim = server.replica_status("text-classification", revision, app="replicas")["pid"]

    os.kill(victim, signal.SIGKILL)
    print(f"\n/status left Loaded {state_becomes(replicas, model_id, 'Loadable'):.2f}s after the kill")
    cold = replicas.post(f"/models/{model_id}", json=body, headers=NO_WAIT)
    assert cold.status_code == 503 and cold.json()["estimated_time"] > 0, cold.text
    state_becomes(replicas, model_id, "Loaded")  # the 503 started the load, on the new replica
    status = server.replica_status("text-classification", revision, app="replicas")
    assert status["pid"] != victim and status["loads"] == 1
    assert replicas.post(f"/models/{model_id}", json=body, headers=NO_WAIT).status_code == 200


def test_after_a_scale_down_to_zero_models_are_cold_and_status_starts_nothing(replicas, tiny_models):
    model_id = tiny_models["fill-mask"]
    body = {"inputs": "a [MASK] b"}
    assert replicas.post(f"/models/{model_id}", json=body, headers=WAIT).status_code == 200
    assert running_replicas("replicas", "fill-mask") == 1
    deadline = time.monotonic() + 90
    while running_replicas("replicas", "fill-mask"):
        assert time.monotonic() < deadline, "fill-mask did not scale down to zero"
        time.sleep(1)
    state_becomes(replicas, model_id, "Loadable", timeout=10)
    refused = replicas.post(f"/models/{model_id}", json=body, headers={**NO_WAIT, "x-load-model": "0"})
    assert refused.status_code == 503
    time.sleep(2)  # neither /status nor X-Load-Model: 0 starts a replica
    assert running_replicas("replicas", "fill-mask") == 0
    cold = replicas.post(f"/models/{model_id}", json=body, headers=NO_WAIT)
    assert cold.status_code == 503 and cold.json()["estimated_time"] > 0
    state_becomes(replicas, model_id, "Loaded")  # that one started a replica and the load
    assert replicas.post(f"/models/{model_id}", json=body, headers=NO_WAIT).status_code == 200


def test_a_killed_model_replica_costs_only_its_requests_in_flight(faults, server, tiny_models):
    model_id = tiny_models["text-classification"]
    url = f"{faults}/models/{model_id}"
    body = {"inputs": "great", "options": {"use_cache": False}}
    assert httpx.post(url, json=body, timeout=60).status_code == 200
    sha = httpx.post(url, json=body, timeout=60).headers["x-sha"]
    victim = server.replica_status("text-classification", f"{model_id}@{sha}", app="faults")["pid"]

    results: list[tuple[int, float, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=TIMEOUT_S + 30) as client:
            while not stop.is_set():
                start = time.monotonic()
                r = client.post(url, json=body)
                results.append((r.status_code, time.monotonic() - start, r.headers.get("retry-after", "")))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    os.kill(victim, signal.SIGKILL)
    time.sleep(6.0)
    stop.set()
    for t in threads:
        t.join()

    statuses = Counter(status for status, _, _ in results)
    errors = [r for r in results if r[0] != 200]
    print(f"\nload run across the kill: {len(results)} requests, {dict(statuses)}")
    assert statuses[200] > 20
    assert set(statuses) <= {200, 503}, statuses  # never a 500
    assert all(retry for status, _, retry in errors), "every 503 says when to retry"
    assert len(errors) <= 8, f"more errors than requests in flight at the kill: {len(errors)}"
    assert max(seconds for _, seconds, _ in results) < TIMEOUT_S + 5  # nothing hangs
    deadline = time.monotonic() + 90
    while running_replicas() < 2:  # Ray restarts the killed replica
        assert time.monotonic() < deadline, "the killed replica was not replaced"
        time.sleep(1)
    assert httpx.post(url, json=body, timeout=60).status_code == 200
