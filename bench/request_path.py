"""Latency and throughput of one embedding request per call against a running server.

    .venv/bin/python bench/request_path.py [--url URL] [--requests 200] [--duration 20]

c=1 for ``--requests`` requests, then c=32 for ``--duration`` seconds, one sentence
per request with the cache bypassed; prints p50/p99 and requests per second. Start
the server first (e.g. `make serve`, optionally with Ray's HAProxy or
throughput-optimized settings) to compare request paths run by run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import run  # noqa: E402

DEFAULT_URL = "http://127.0.0.1:8000/models/sentence-transformers/all-MiniLM-L6-v2/pipeline/feature-extraction"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    body = orjson.dumps({"inputs": "A man is eating food."})
    headers = {"x-use-cache": "false"}
    for label, result in (
        ("c=1", run(args.url, body, 1, requests=args.requests, headers=headers)),
        ("c=32", run(args.url, body, 32, duration_s=args.duration, headers=headers)),
    ):
        print(f"{label:>5}: p50 {result.percentile(0.5) * 1000:6.1f} ms  p99 {result.percentile(0.99) * 1000:6.1f} ms"
              f"  {result.rps:6.0f} rps  failures {len(result.failures)}")
        if result.failures:
            print("       first failure:", result.failures[0])


if __name__ == "__main__":
    main()
