"""Pulls between two local hubserves: download time and first answer of the real models.

    .venv/bin/python bench/hub_pull.py [--requests 5]

Server A is `make serve`'s command on the default config (it holds the real models of
`make setup`); server B is the same command on the default config with no models of its own and
``hub.endpoint`` set to A, with its own data folder and ONNX cache (as a new user pulling a Hub
model has no export). For each real model: the download alone (``hubserve.repos.hub.Puller`` from A
into a fresh cache, in this process), then B's first answer (download, replica start, load and
ONNX export), then ``--requests`` warm answers (cache bypassed). Every request must be a 200.
"""

from __future__ import annotations

import argparse
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
from bench.real_models import CHAT, EFFICIENTNET, SMOLLM, WHISPER, first_and_warm, wait_up  # noqa: E402
from tests.media import speech  # noqa: E402


def mirror_config(work: Path, upstream: str) -> Path:
    """configs/default.yaml with no models of its own, pulling from ``upstream``."""
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    args = config["applications"][0]["args"]
    args.update(models={}, data_dir=str(work / "b-data"), onnx_cache=str(work / "b-onnx"), hf_cache=None,
                hub={**args.get("hub", {}), "endpoint": upstream, "download": True})
    path = work / "mirror.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def download_only(upstream: str, model_id: str, cache: Path) -> tuple[float, int]:
    """Seconds and bytes of one pull from ``upstream`` into an empty cache."""
    from hubserve.config.sections import HubConfig
    from hubserve.repos.hub import Puller

    puller = Puller(HubConfig(endpoint=upstream, cache_dir=str(cache)), env={})
    start = time.perf_counter()
    remote = puller.remote(model_id)
    puller.pull(model_id, remote)
    return time.perf_counter() - start, remote.total_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5, help="warm answers per model")
    args = parser.parse_args()
    clip = speech("The quick brown fox jumps over the lazy dog.", "flac")
    cat = (ROOT / "tests" / "data" / "cat.jpg").read_bytes()
    cases = [(EFFICIENTNET, "/models/{}", {"content": cat}), (WHISPER, "/models/{}", {"content": clip}),
             (SMOLLM, "/models/{}/v1/chat/completions", {"json": CHAT})]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hubserve-pull-") as tmp:
        work = Path(tmp)
        (work / "a-store").mkdir()
        (work / "b-store").mkdir()
        a_log, b_log = work / "a.log", work / "b.log"
        a = start_make_serve(work / "a-store", a_log, work / "a-state")
        b = None
        try:
            a_base = a.url.split("/models/")[0]
            wait_up(a_base, a.proc, a_log)
            b = start_make_serve(work / "b-store", b_log, work / "b-state", str(mirror_config(work, a_base)))
            b_base = b.url.split("/models/")[0]
            wait_up(b_base, b.proc, b_log)
            with httpx.Client(base_url=b_base, timeout=900, headers={"x-use-cache": "false"}) as client:
                for model_id, path, body in cases:
                    seconds, size = download_only(a_base, model_id, work / "download-only" / model_id)
                    first, first_s, p50 = first_and_warm(client, path.format(model_id), body, args.requests)
                    rows.append((model_id, size, seconds, first_s, p50, first.headers.get("x-compute-type", "?")))
        finally:
            if b is not None:
                stop(b.proc)
            stop(a.proc)
    print(f"\nPulls from server A to server B (both `make serve` on this machine), {args.requests} warm requests\n")
    print(f"{'model':38} {'bytes':>8} {'download':>9} {'MB/s':>6} {'B first answer':>15} {'warm p50':>9}  compute")
    for model_id, size, seconds, first_s, p50, compute in rows:
        print(f"{model_id:38} {size / 1e6:6.1f}MB {seconds:8.2f}s {size / 1e6 / seconds:6.1f} {first_s:14.2f}s "
              f"{p50 * 1000:7.1f}ms  {compute}")
    print("\nB's first answer: the download, its task replica's start (min_replicas 0), the load and the ONNX"
          "\nexport (B has its own export cache, as a fresh install pulling a Hub model does).")


if __name__ == "__main__":
    main()
