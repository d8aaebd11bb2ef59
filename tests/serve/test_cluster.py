"""Scale-out on a real two-node Ray cluster (`hubserve cluster up`, 1 CPU per node, GCS fault
tolerance on a real Redis) with `hubserve serve --address`: replicas on both nodes, a proxy on
each, an ingress replica killed under load, the whole head node killed and restarted, then a
whole worker node killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from hubserve.cli.process import processes_with_env
from tests.conftest import ADMIN_TOKEN, free_port
from tests.serve.test_stop import command

TIMEOUT_S = 30
HUBSERVE = [sys.executable, "-m", "hubserve.cli.main"]


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def wait_for(check, timeout_s: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout and not proc.stdout.closed else ""
            raise AssertionError(f"{what}: the command exited with {proc.returncode}: {out[-2000:]}")
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(0.3)


def gcs_keys(redis_url: str, namespace: str) -> list:
    import redis

    return list(redis.Redis.from_url(redis_url).scan_iter(match=f"*{namespace}*"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_url):
    root = tmp_path_factory.mktemp("cluster")
    http_port = free_port()  # the head's proxy; the worker's takes the next port
    up = subprocess.Popen([*HUBSERVE, "cluster", "up", "--nodes", "2", "--cpus-per-node", "1",
                           "--http-port", str(http_port), "--dir", str(root / "ray"), "--gcs-redis", redis_url],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    state = root / "ray" / "cluster.json"
    wait_for(state.exists, 120, "cluster up", up)
    info = json.loads(state.read_text())
    token_env = ("RAY_AUTH_TOKEN_PATH", info["auth_token_path"])
    assert gcs_keys(redis_url, info["gcs_namespace"]), "the GCS keeps no state in Redis"
    yield {**info, "root": root, "http_port": http_port, "proc": up, "token_env": token_env}
    up.send_signal(signal.SIGTERM)
    try:
        out = up.communicate(timeout=60)[0].decode()
    except subprocess.TimeoutExpired:
        up.kill()
        out = up.communicate()[0].decode()
    left = processes_with_env(*token_env)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert up.returncode == 0, out
    assert not left, f"left running after cluster up stopped: {[command(p) for p in left]}"
    assert not state.exists()
    assert not gcs_keys(redis_url, info["gcs_namespace"]), "the cluster's GCS state was left in Redis"


@pytest.fixture(scope="module")
def deployed(cluster, tiny_store, tiny_models):
    root = cluster["root"]
    config = root / "serve.yaml"
    config.write_text(json.dumps({
        "http_options": {"host": "127.0.0.1", "port": 8000, "request_timeout_s": TIMEOUT_S},
        "applications": [{"name": "hubserve", "route_prefix": "/", "import_path": "serve_app.app:build_app", "args": {
            "model_store": str(tiny_store), "data_dir": str(root / "data"), "hf_cache": None,
            "hub": {"download": False}, "request_timeout_s": TIMEOUT_S, "serve_tasks": ["text-classification"],
            "ingress": {"num_cpus": 0.1, "num_replicas": 2, "max_replicas_per_node": 1, "inline": []},
            "deployment_defaults": {"num_cpus": 0.3, "threads": 1, "max_replicas_per_node": 1,
                                    "autoscaling": {"min_replicas": 2, "max_replicas": 2}}}}]}))
    env = dict(os.environ, HUBSERVE_ADMIN_TOKEN=ADMIN_TOKEN, RAY_AUTH_TOKEN_PATH=cluster["auth_token_path"])
    env.pop("RAY_TMPDIR", None)
    serve = subprocess.Popen([*HUBSERVE, "serve", str(config), "--port", str(cluster["http_port"]),
                              "--proxy-location", "EveryNode", "--address", cluster["address"],
                              "--state-dir", str(root / "state")], env=env, cwd=str(root),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(line.decode() for line in serve.stdout), daemon=True).start()
    wait_for(lambda: any("serving on" in line for line in lines), 240, "hubserve serve --address", serve)
    urls = [f"http://127.0.0.1:{node['http_port']}" for node in cluster["nodes"]]
    yield {"urls": urls, "model_id": tiny_models["text-classification"]}
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=60) == 0, "".join(lines[-20:])


def node_of_replicas(cluster, kind: str) -> list[int]:
    """The raylet (one per node) above each running replica of ``kind``."""
    return sorted(parent(pid) for pid in processes_with_env(*cluster["token_env"])
                  if command(pid).startswith(f"ray::ServeReplica:hubserve:{kind}"))


def raylets(cluster) -> list[int]:
    return sorted(pid for pid in processes_with_env(*cluster["token_env"]) if "raylet/raylet" in command(pid))


def test_replicas_spread_over_both_nodes_and_every_node_proxy_answers(cluster, deployed):
    body = {"inputs": "a fine day", "options": {"use_cache": False}}
    answers = []
    for url in deployed["urls"]:
        for _ in range(3):
            r = httpx.post(f"{url}/models/{deployed['model_id']}", json=body, timeout=60)
            assert r.status_code == 200, (url, r.text)
            answers.append(r.json())
    assert all(answer == answers[0] for answer in answers)
    nodes = raylets(cluster)
    assert len(nodes) == 2
    for kind in ("ingress", "text-classification"):
        assert node_of_replicas(cluster, kind) == nodes, f"{kind}'s replicas are not one per node"


def kill_node(cluster, node: dict) -> None:
    """SIGKILL to a whole node: its `ray start`, raylet and agents (one session), and the workers
    under its raylet (replicas, proxy, HAProxy)."""
    processes = processes_with_env(*cluster["token_env"])
    raylet = next(pid for pid in processes if "raylet/raylet" in command(pid) and os.getsid(pid) == node["pid"])
    for pid in [pid for pid in processes if os.getsid(pid) == node["pid"] or parent(pid) == raylet]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Load:
    """Client threads posting to ``url`` until stopped: (status or error name, seconds, retry-after, type)."""

    def __init__(self, url: str, body: dict, threads: int = 4) -> None:
        self.url, self.body, self.results = url, body, []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(timeout=TIMEOUT_S + 30) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    r = client.post(self.url, json=self.body)
                    self.results.append((r.status_code, time.monotonic() - start, r.headers.get("retry-after", ""),
                                         r.headers.get("content-type", "")))
                except httpx.HTTPError as exc:
                    self.results.append((type(exc).__name__, time.monotonic() - start, "", ""))

    def finish(self, what: str) -> Counter:
        """Stops the load and checks that only the requests in flight at the fault were lost:
        200s, else hubserve's JSON 503 with Retry-After, or (a request in flight on a replica
        that died, which HAProxy cannot know whether it ran) a dropped connection, at most one
        per client thread; nothing slower than the request timeout."""
        self.stop.set()
        for t in self.threads:
            t.join()
        statuses = Counter(status for status, _, _, _ in self.results)
        errors = [r for r in self.results if r[0] != 200]
        print(f"\nload across {what}: {len(self.results)} requests, {dict(statuses)}, "
              f"slowest {max(seconds for _, seconds, _, _ in self.results):.2f}s")
        assert statuses[200] > 20
        dropped = [r for r in errors if r[0] == "RemoteProtocolError"]
        answered = [r for r in errors if r[0] != "RemoteProtocolError"]
        assert {status for status, _, _, _ in answered} <= {503}, statuses  # never a 500
        assert all(retry and "json" in kind for _, _, retry, kind in answered), "every 503 is JSON saying when to retry"
        assert len(dropped) <= len(self.threads), statuses
        assert len(errors) <= 8, f"more errors than requests in flight at the fault: {len(errors)}"
        assert max(seconds for _, seconds, _, _ in self.results) < TIMEOUT_S + 5
        return statuses


def spread_again(cluster) -> None:
    """Waits until every node runs a replica of the ingress and of the task (Serve replaced the lost ones)."""
    def spread() -> bool:
        nodes = raylets(cluster)
        found = {kind: node_of_replicas(cluster, kind) for kind in ("ingress", "text-classification")}
        spread.last = (nodes, found)
        return len(nodes) == 2 and all(found[kind] == nodes for kind in found)

    try:
        wait_for(spread, 120, "replicas on both nodes again", cluster["proc"])
    except AssertionError:
        raise AssertionError(f"raylets and replicas' raylets: {spread.last}") from None


def test_a_killed_ingress_replica_costs_only_its_requests_in_flight(cluster, deployed):
    head = next(node for node in cluster["nodes"] if node["name"] == "head")
    raylet = next(pid for pid in raylets(cluster) if os.getsid(pid) == head["pid"])
    victim = next(pid for pid in processes_with_env(*cluster["token_env"])
                  if command(pid).startswith("ray::ServeReplica:hubserve:ingress") and parent(pid) == raylet)
    load = Load(f"{deployed['urls'][0]}/models/{deployed['model_id']}", {"inputs": "great",
                                                                       "options": {"use_cache": False}})
    time.sleep(3.0)
    os.kill(victim, signal.SIGKILL)
    time.sleep(12.0)  # past Serve's health check, which notices the dead replica
    load.finish("the head's ingress replica's death, through the head's proxy")
    spread_again(cluster)


def test_a_restarted_head_takes_the_cluster_back_while_the_worker_serves(cluster, deployed):
    body = {"inputs": "great", "options": {"use_cache": False}}
    head_url, worker_url = deployed["urls"]
    head = next(node for node in cluster["nodes"] if node["name"] == "head")
    state = cluster["root"] / "ray" / "cluster.json"
    load = Load(f"{worker_url}/models/{deployed['model_id']}", body)
    time.sleep(3.0)
    killed = time.monotonic()
    kill_node(cluster, head)
    wait_for(lambda: json.loads(state.read_text())["nodes"][0]["starts"] == 2, 120, "the head restarted",
             cluster["proc"])
    restarted = time.monotonic() - killed

    def head_serves() -> bool:
        try:
            return httpx.post(f"{head_url}/models/{deployed['model_id']}", json=body, timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(head_serves, 180, "the restarted head's proxy serves", cluster["proc"])
    back = time.monotonic() - killed
    time.sleep(2.0)
    load.finish(f"the head's death, through the worker's proxy (the head restarted in {restarted:.1f}s, "
                f"its proxy served again after {back:.1f}s)")
    # Serve's controller came back on the new head and replaced the head's replicas
    spread_again(cluster)
    cluster["nodes"] = json.loads(state.read_text())["nodes"]


def test_a_killed_worker_node_costs_only_its_requests_in_flight(cluster, deployed):
    url = f"{deployed['urls'][0]}/models/{deployed['model_id']}"
    body = {"inputs": "great", "options": {"use_cache": False}}
    worker = next(node for node in cluster["nodes"] if node["name"] != "head")
    load = Load(url, body)
    time.sleep(3.0)
    kill_node(cluster, worker)
    time.sleep(12.0)
    load.finish("the worker node's death, through the head's proxy")
    # the head keeps serving, and `cluster up` noticed
    assert httpx.post(url, json=body, timeout=60).status_code == 200
    assert len(raylets(cluster)) == 1 and cluster["proc"].poll() is None
