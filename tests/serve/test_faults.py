"""Faults survived: a model replica killed (by its PID) in the middle of a load run."""

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


def running_replicas() -> int:
    from ray import serve

    app = serve.status().applications["faults"]
    return int(app.deployments["text-classification"].replica_states.get("RUNNING", 0))


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
