"""This checkout against a previous commit of hubserve, side by side on `make serve`, in one run.

    .venv/bin/python bench/versus_previous.py [--previous 55a15d3] [--repeats 3]

The previous commit (default: the last main on transformers 4.57 and optimum-onnx) is checked
out as a git worktree under ``.hubserve/bench-previous/`` and set up there with its own
``make setup`` (its own venv, its converted real models and their exports); this checkout runs
its own ``make setup`` too, as ``make serve`` does. Then each server
is started in turn with ``configs/default.yaml`` exactly as ``make serve`` starts it, on an
empty store of its own, alternating previous and current ``--repeats`` times under the same
load (in ABBA order), and measured:

- ``/models/{MiniLM}`` at c=1 (``--requests`` requests, p50) and c=32 (``--duration`` s, rps),
  one sentence per request, ``options.use_cache: false``;
- the warm latency (median of ``--warm`` answers after the first, ``x-use-cache: false``) of
  each real model: whisper-tiny.en, EfficientNet-Lite0, SmolLM2 chat.

Every request must succeed (200), or the run stops. It prints the medians of each side and the
ratios current / previous (throughput) and previous / current (latency): at least 0.95 each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embeddings import MODEL_ID, SENTENCE, free_port, stop  # noqa: E402
from bench.loadgen import run  # noqa: E402
from bench.real_models import CHAT, EFFICIENTNET, SMOLLM, WHISPER, first_and_warm, wait_up  # noqa: E402
from tests.media import speech  # noqa: E402

#: The last main on transformers 4.57.6, huggingface_hub 0.36 and optimum-onnx 0.1.0.
PREVIOUS = "55a15d3"


def checkout(ref: str) -> Path:
    """A worktree of ``ref``, set up by its own ``make setup`` (kept between runs)."""
    tree = ROOT / ".hubserve" / "bench-previous"
    if tree.exists():
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        wanted = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True).stdout
        if head.strip() != wanted.strip():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True)
    print(f"make setup in {tree} (its own venv and exports; minutes the first time)", flush=True)
    subprocess.run(["make", "-s", "setup"], cwd=tree, check=True)
    return tree


def start(tree: Path, work: Path, name: str):
    """``make serve``'s command in ``tree`` on a free port and an empty store; its process and base URL."""
    port = free_port()
    store = work / f"store-{name}"
    store.mkdir(exist_ok=True)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "HUBSERVE_MODEL_STORE": str(store)}
    env.pop("RAY_ADDRESS", None)
    log = work / f"{name}.log"
    proc = subprocess.Popen([str(tree / ".venv" / "bin" / "hubserve"), "serve", "configs/default.yaml",
                             "--port", str(port), "--state-dir", str(work / f"state-{name}")],
                            cwd=tree, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", log


def measure(base: str, args, clip: bytes, cat: bytes) -> dict:
    url = f"{base}/models/{MODEL_ID}"
    body = orjson.dumps({"inputs": SENTENCE, "options": {"use_cache": False}})
    out = {}
    run(url, body, 4, duration_s=3)  # warm-up
    c1 = run(url, body, 1, requests=args.requests)
    c32 = run(url, body, 32, duration_s=args.duration)
    for name, result in (("c=1", c1), ("c=32", c32)):
        if result.failures:
            raise RuntimeError(f"{name}: {len(result.failures)} failures, first: {result.failures[0]}")
    out["minilm c=1 p50 ms"] = statistics.median(c1.latencies) * 1000
    out["minilm c=32 rps"] = c32.rps
    cases = [(WHISPER, "/models/{}", {"content": clip}), (EFFICIENTNET, "/models/{}", {"content": cat}),
             (SMOLLM, "/models/{}/v1/chat/completions", {"json": CHAT})]
    with httpx.Client(base_url=base, timeout=600, headers={"x-use-cache": "false"}) as client:
        for model_id, path, kwargs in cases:
            first, _, p50 = first_and_warm(client, path.format(model_id), kwargs, args.warm)
            out[f"{model_id.split('/')[-1]} warm ms"] = p50 * 1000
            out[f"{model_id.split('/')[-1]} compute"] = first.headers.get("x-compute-type", "?")
            if model_id == SMOLLM:
                out["smollm answer"] = first.json()["choices"][0]["message"]["content"][:60]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--previous", default=PREVIOUS, help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warm", type=int, default=10, help="warm answers per real model")
    args = parser.parse_args()
    trees = {"previous": checkout(args.previous), "current": ROOT}
    print("make setup here (the exports of this checkout, as `make serve` makes them)", flush=True)
    subprocess.run(["make", "-s", "setup"], cwd=ROOT, check=True)
    clip = speech("The quick brown fox jumps over the lazy dog.", "flac")
    cat = (ROOT / "tests" / "data" / "cat.jpg").read_bytes()
    runs: dict[str, list[dict]] = {"previous": [], "current": []}
    work = Path(tempfile.mkdtemp(prefix="hubserve-versus-"))
    try:
        for i in range(args.repeats):
            # NOTE(hubserve): ABBA order, so that neither side always runs second (after the other's shutdown).
            for name, tree in (list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]):
                print(f"run {i + 1}/{args.repeats}: {name}", flush=True)
                proc, base, log = start(tree, work, name)
                try:
                    wait_up(base, proc, log, 600)
                    runs[name].append(measure(base, args, clip, cat))
                finally:
                    stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(runs, args)


def report(runs: dict, args) -> None:
    keys = [k for k in runs["current"][0] if isinstance(runs["current"][0][k], float)]
    med = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    print(f"\nmake serve (configs/default.yaml): previous {args.previous} against this checkout, "
          f"medians of {args.repeats} alternating runs\n")
    print(f"{'measure':28} {'previous':>10} {'current':>10} {'ratio':>7}")
    worst = None
    for key in keys:
        old, new = med["previous"][key], med["current"][key]
        ratio = new / old if key.endswith("rps") else old / new  # above 1: the current one is better
        worst = ratio if worst is None else min(worst, ratio)
        print(f"{key:28} {old:10.1f} {new:10.1f} {ratio:6.2f}x")
    for name in ("previous", "current"):
        last = runs[name][-1]
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in last.items() if not isinstance(v, float)))
    print(f"\nworst ratio {worst:.2f}x (target >= 0.95)")


if __name__ == "__main__":
    main()
