"""The real models of `make serve` (configs/default.yaml): first answer, warm latency and
replica memory of each, and the ONNX Runtime speed-up over PyTorch where there is one, in one run.

    .venv/bin/python bench/real_models.py [--requests 10]

The server is `make serve`'s command with the default config plus a PyTorch twin of each real
model that runs on ONNX Runtime by default (the same folder, ``backend: torch``), so that both
backends are measured side by side in one server. For each model, in this order: the first
answer (its task deployment starts from ``min_replicas: 0`` and loads the export ``make setup``
made; the twin's replica is then up, so its first answer is a load only), then ``--requests`` warm answers one at a time (cache
bypassed with ``x-use-cache: false``), and the RSS of its task's replica process. Every
request must succeed (200), or the run stops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embeddings import stop  # noqa: E402
from bench.make_serve import start_make_serve  # noqa: E402
from tests.media import speech  # noqa: E402

WHISPER, EFFICIENTNET, SMOLLM = "openai/whisper-tiny.en", "hubserve/efficientnet-lite0", \
    "HuggingFaceTB/SmolLM2-135M-Instruct"
CHAT = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 20}


def twin(model_id: str) -> str:
    return f"bench/{model_id.split('/')[-1]}-torch"


def config_with_twins(work: Path) -> Path:
    """configs/default.yaml plus a ``backend: torch`` twin of each real model."""
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    models = config["applications"][0]["args"]["models"]
    for model_id in (WHISPER, EFFICIENTNET, SMOLLM):
        entry = dict(models[model_id])
        entry["path"] = str((ROOT / entry["path"]).resolve())
        models[model_id]["path"] = entry["path"]
        models[twin(model_id)] = {**entry, "backend": "torch"}
    path = work / "real-models.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def replica_rss(task: str) -> int:
    """RSS bytes of the replica processes of ``task``'s deployment."""
    total = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"ServeReplica:hubserve:{task}".encode() not in cmdline.read_bytes():
                continue
            for line in (cmdline.parent / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def call(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    r = client.request(method, path, **kwargs)
    if r.status_code != 200:
        raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
    return r


def first_and_warm(client: httpx.Client, path: str, body: dict, requests: int) -> tuple[httpx.Response, float, float]:
    """The first answer, its seconds, and the median seconds of ``requests`` warm answers (all 200)."""
    start = time.perf_counter()
    first = call(client, "POST", path, **body)
    first_s = time.perf_counter() - start
    warm = []
    for _ in range(requests):
        start = time.perf_counter()
        call(client, "POST", path, **body)
        warm.append(time.perf_counter() - start)
    return first, first_s, statistics.median(warm)


def wait_up(base: str, proc, log: Path, timeout_s: float = 300) -> None:
    """Returns once ``base`` answers /health; raises with the server's log if it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"the server did not start; see {log}:\n{log.read_text()[-2000:]}")
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10, help="warm answers per model")
    args = parser.parse_args()
    clip = speech("The quick brown fox jumps over the lazy dog.", "flac")
    cat = (ROOT / "tests" / "data" / "cat.jpg").read_bytes()
    cases = [  # (model id, task, path, request kwargs)
        (WHISPER, "automatic-speech-recognition", "/models/{}", {"content": clip}),
        (EFFICIENTNET, "image-classification", "/models/{}", {"content": cat}),
        (SMOLLM, "text-generation", "/models/{}/v1/chat/completions", {"json": CHAT}),
    ]
    with tempfile.TemporaryDirectory(prefix="hubserve-bench-") as tmp:
        work = Path(tmp)
        (work / "store").mkdir()
        log = work / "server.log"
        target = start_make_serve(work / "store", log, work / "state", str(config_with_twins(work)))
        base = target.url.split("/models/")[0]
        rows = []
        try:
            with httpx.Client(base_url=base, timeout=600, headers={"x-use-cache": "false"}) as client:
                wait_up(base, target.proc, log)
                for model_id, task, path, body in cases:
                    for served in (model_id, twin(model_id)):
                        first, first_s, p50 = first_and_warm(client, path.format(served), body, args.requests)
                        rows.append((served, task, first.headers.get("x-compute-type", "?"), first_s, p50,
                                     replica_rss(task)))
        finally:
            stop(target.proc)
    report(rows, args)


def report(rows, args) -> None:
    print(f"\nReal models of configs/default.yaml, one server, {args.requests} warm requests each (cache off)\n")
    print(f"{'model':42} {'compute':14} {'first answer':>13} {'warm p50':>10} {'replica RSS':>12}")
    for served, task, compute, first_s, p50, rss in rows:
        print(f"{served:42} {compute:14} {first_s:12.2f}s {p50 * 1000:8.1f}ms {rss / 2**20:10.0f}MB")
    print("\nThe first row of a task starts its replica (min_replicas 0) and loads the ONNX export `make setup`"
          "\nmade (or exports it, where setup did not); the torch twin's first answer is a load into the running"
          "\nreplica, whose RSS then holds both models.\n")
    by_id = {served: p50 for served, _, _, _, p50, _ in rows}
    for model_id in (WHISPER, EFFICIENTNET, SMOLLM):
        default, torch = by_id.get(model_id), by_id.get(twin(model_id))
        compute = next(c for s, _, c, _, _, _ in rows if s == model_id)
        if default and torch and compute == "cpu+optimized":
            print(f"ONNX Runtime speed-up, {model_id}: {torch / default:.2f}x (warm p50, torch / onnx)")
        elif default and torch:
            print(f"{model_id} runs on PyTorch by default ({compute}): no ONNX speed-up to report")


if __name__ == "__main__":
    main()
