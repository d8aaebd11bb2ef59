"""Autoscaling on `make serve`'s configuration: a hot model at rising concurrency.

    .venv/bin/python bench/scaling.py [--phase-s 30] [--concurrency 1 4 16 32]

The server is `make serve`'s command on configs/default.yaml; the hot model is its real
EfficientNet-Lite0 (image-classification: ``min_replicas: 0``, ``max_replicas: 2``,
``target_ongoing_requests: 8``), sent the test cat picture with the cache bypassed. The first
request finds no replica (min_replicas 0) and waits for one. Each phase then runs one closed-loop
concurrency for ``--phase-s`` seconds and prints the running replicas at its end (Serve's
controller), the rps and p50/p99 of its second half (after the autoscaler had time to act), and
how many requests each replica took (by PID). After the load, the run waits for the replicas to
return to ``min_replicas``, one step per ``downscale_delay_s`` (2 to 1, then 1 to 0), and prints
when each step came. Every request must be a 200, or the run stops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "token")  # read when Ray is imported: the server's Ray, as `make serve` starts it

from bench.embeddings import stop  # noqa: E402
from bench.loadgen import run  # noqa: E402
from bench.make_serve import start_make_serve  # noqa: E402
from bench.real_models import EFFICIENTNET, wait_up  # noqa: E402

TASK = "image-classification"


class Controller:
    """Serve's view of the server's replicas, from a Ray driver attached to its cluster."""

    def __init__(self, address: str) -> None:
        import ray

        ray.init(address=address, namespace="serve", log_to_driver=False)

    def running(self) -> int:
        from ray import serve

        app = serve.status().applications.get("hubserve")
        deployment = app.deployments.get(TASK) if app else None
        return int(deployment.replica_states.get("RUNNING", 0)) if deployment else 0

    def served(self, revision_id: str, samples: int = 24) -> dict[int, int]:
        """Requests taken per replica PID (the router spreads the questions over the replicas)."""
        from ray import serve

        handle = serve.get_deployment_handle(TASK, app_name="hubserve").options(multiplexed_model_id=revision_id)
        seen = {}
        for _ in range(samples):
            status = handle.model_status.remote(revision_id).result()
            seen[status["pid"]] = status["served"]
        return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase-s", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    args = parser.parse_args()
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())["applications"][0]["args"]
    scaling = {**config["deployment_defaults"]["autoscaling"], **(config.get("tasks", {}).get(TASK, {}) or {})
               .get("autoscaling", {})}
    downscale_s = float(scaling.get("downscale_delay_s", 60.0))
    cat = (ROOT / "tests" / "data" / "cat.jpg").read_bytes()
    headers = {"content-type": "image/jpeg", "x-use-cache": "false"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hubserve-scaling-") as tmp:
        work = Path(tmp)
        (work / "store").mkdir()
        log = work / "server.log"
        server = start_make_serve(work / "store", log, work / "state")
        try:
            base = server.url.split("/models/")[0]
            wait_up(base, server.proc, log)
            url = f"{base}/models/{EFFICIENTNET}"
            port = httpx.URL(base).port
            controller = Controller(json.loads((work / "state" / str(port) / "ray.json").read_text())["address"])
            assert controller.running() == 0, "image-classification starts with no replica (min_replicas 0)"
            start = time.perf_counter()
            first = httpx.post(url, content=cat, headers=headers, timeout=300)
            if first.status_code != 200:
                raise RuntimeError(f"first request: {first.status_code} {first.text[:300]}")
            first_s = time.perf_counter() - start
            revision = f"{EFFICIENTNET}@{first.headers['x-sha']}"
            for concurrency in args.concurrency:
                run(url, cat, concurrency, duration_s=args.phase_s / 2, headers=headers)  # the autoscaler acts
                result = run(url, cat, concurrency, duration_s=args.phase_s / 2, headers=headers)
                if result.failures:
                    raise RuntimeError(f"c={concurrency}: {len(result.failures)} failures, e.g. {result.failures[0]}")
                rows.append((concurrency, controller.running(), result.rps, result.percentile(0.5),
                             result.percentile(0.99), controller.served(revision)))
            idle_start = time.monotonic()
            steps = []  # (seconds after the load, replicas now running)
            running = controller.running()
            # Serve scales down one step at a time, each after downscale_delay_s: to 1, then to 0
            while running > int(scaling.get("min_replicas", 0)):
                if time.monotonic() - idle_start > 2 * downscale_s + 120:
                    raise RuntimeError("the replicas did not scale back down")
                time.sleep(1)
                if (now := controller.running()) != running:
                    steps.append((time.monotonic() - idle_start, now))
                    running = now
        finally:
            import ray

            ray.shutdown()  # before the server goes: a driver whose cluster vanishes exits the process
            stop(server.proc)
    print(f"\nAutoscaling of {TASK} ({EFFICIENTNET}) on configs/default.yaml: min_replicas "
          f"{scaling.get('min_replicas')}, max_replicas {scaling.get('max_replicas')}, target_ongoing_requests "
          f"{scaling.get('target_ongoing_requests')}; {args.phase_s:g} s phases, measured over their second half\n")
    print(f"first request with no replica running: {first_s:.1f} s (200)\n")
    print(f"{'concurrency':>11} {'replicas':>8} {'rps':>7} {'p50':>8} {'p99':>8}  requests per replica (pid: count)")
    for concurrency, replicas, rps, p50, p99, served in rows:
        shares = ", ".join(f"{pid}: {count}" for pid, count in sorted(served.items()))
        print(f"{concurrency:>11} {replicas:>8} {rps:>7.1f} {p50 * 1000:>6.0f}ms {p99 * 1000:>6.0f}ms  {shares}")
    print(f"\nafter the load stopped (downscale_delay_s {downscale_s:g}): "
          + ", ".join(f"{replicas} replica(s) at {at:.0f} s" for at, replicas in steps))


if __name__ == "__main__":
    main()
