"""ONNX Runtime against OpenVINO on this CPU, side by side in one run, on the graphs the project exports.

    .venv/bin/python bench/engines.py [--repeats 3] [--seconds 3]

OpenVINO lives in its own venv (``.venv-openvino``, made the first time with this checkout's
onnxruntime and numpy pins), so the product's venv stays as it is. This script exports, with the
project's own exporter, the plain float32 graphs of all-MiniLM-L6-v2 (feature extraction) and
EfficientNet-Lite0 (image classification) from ``configs/default.yaml``'s store (after its
``make setup``, whose exports say which variant hubserve serves), makes the
variants ONNX Runtime serves (the transformer optimizer's fused graph, the int8 copy), and times
in one child process, on the same inputs (the fidelity gate's sentences, tokenized as the
embedding replica does; a random image), alternating ``--repeats`` times:

- ONNX Runtime on each variant; OpenVINO on the plain graph (it reads ONNX itself and compiles
  its own fusions; the fused graph has ONNX Runtime's own operators) and on the int8 copy;
- one and two threads, batch 1 and 8 sentences, one image.

It prints each engine's median milliseconds, its ratio to what hubserve serves (ONNX Runtime's
chosen variant) and the least cosine of its answers to ONNX Runtime's on the plain graph (per
token for text, padding left out, as the fidelity gate compares them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-openvino"
OPENVINO = "openvino==2026.4.1"
MINILM, EFFICIENTNET = "sentence-transformers/all-MiniLM-L6-v2", "hubserve/efficientnet-lite0"


def openvino_python() -> Path:
    """The Python of the OpenVINO venv, made on the first run."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), OPENVINO,
                        "onnxruntime", "numpy"], check=True)
    return python


def graphs(folder: Path) -> list[dict]:
    """The graphs to time: ``{model, plain, variants, served, feeds}`` (exported into ``folder``)."""
    sys.path.insert(0, str(ROOT))
    from transformers import AutoTokenizer

    from deployments.backends import onnx_build, onnx_encoder
    from deployments.backends.onnx_encoder import SAMPLE_TEXTS
    from deployments.backends.onnx_export import entry_dir, read_manifest
    from deployments.tasks._heads import BASE
    from deployments.tasks.image_classification import ImageClassification
    from hubserve.config.app import AppConfig, hubserve_args
    from hubserve.config.base import load_yaml
    from hubserve.repos.store import open_store

    config = AppConfig.from_args(hubserve_args(load_yaml(ROOT / "configs" / "default.yaml")))
    store = open_store(config)
    jobs = []
    for model_id, head in ((MINILM, BASE), (EFFICIENTNET, ImageClassification.head)):
        ref = store.resolve(model_id)
        manifest = read_manifest(entry_dir(Path(config.onnx_cache), ref.sha, head)) or {}
        out = folder / model_id.replace("/", "--")
        out.mkdir(parents=True)
        reference = onnx_build.load_reference(ref.path, head.auto_class)
        onnx_encoder.export(reference, out)
        (out / "plain.onnx").write_bytes((out / "model.onnx").read_bytes())
        onnx_build.quantize(out, "model.onnx")  # model.int8.onnx, from the plain graph, as the exporter makes it
        fused = onnx_build.optimize(out, "model.onnx", reference.config.model_type, reference.config)
        variants = {"fp32": out / ("model.onnx" if fused else "plain.onnx"), "int8": out / "model.int8.onnx"}
        if model_id == MINILM:  # the gate's sentences, padded as the embedding replica pads a batch
            tokenizer = AutoTokenizer.from_pretrained(ref.path)
            inputs = [(f"{n} sentence{'s' * (n > 1)}", {k: v.tolist() for k, v in tokenizer(
                (list(SAMPLE_TEXTS) * 3)[:n], padding=True, return_tensors="np").items()}) for n in (1, 8)]
        else:
            inputs = [("1 image", {"pixel_values": [1, 3, 224, 224]})]
        for label, feeds in inputs:
            jobs.append({"model": f"{model_id.split('/')[1]} ({label})", "plain": str(out / "plain.onnx"),
                         "variants": {k: str(v) for k, v in variants.items()},
                         "served": manifest.get("choice"), "feeds": feeds})
    return jobs


# -- the child: runs in the OpenVINO venv (numpy, onnxruntime, openvino only) ---------------------


def _feeds(given: dict):
    """Token ids as given; pixels (given as a shape) drawn at random."""
    import numpy as np

    if "pixel_values" in given:
        return {"pixel_values": np.random.default_rng(0).standard_normal(given["pixel_values"], dtype=np.float32)}
    return {name: np.asarray(value, dtype=np.int64) for name, value in given.items()}


def _ort(path: str, threads: int, feeds: dict):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda feeds: session.run(None, {n: feeds[n] for n in names})[0]


def _openvino(path: str, threads: int, feeds: dict):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    if "pixel_values" in feeds:  # images have one size: static shapes (OpenVINO fails on this graph's dynamic ones)
        model.reshape({"pixel_values": list(feeds["pixel_values"].shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                 "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    names = [p.get_any_name() for p in compiled.inputs]

    def run(feeds):
        request.infer({n: feeds[n] for n in names})
        return request.get_output_tensor(0).data.copy()
    return run


def _min_cosine(a, b, feeds: dict) -> float:
    """The least cosine of two outputs' rows: per token of a text output (padding left out, as the gate does)."""
    import numpy as np

    mask = feeds.get("attention_mask")
    if mask is not None and a.ndim == 3 and a.shape[:2] == mask.shape:
        a, b = a[mask.astype(bool)], b[mask.astype(bool)]
    a, b = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def _timed(run, feeds, seconds: float) -> float:
    for _ in range(3):
        run(feeds)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def child(job_file: str, repeats: int, seconds: float) -> None:
    results = {}
    for job in json.loads(Path(job_file).read_text()):
        feeds = _feeds(job["feeds"])
        for threads in (1, 2):
            expected = _ort(job["plain"], threads, feeds)(feeds)
            runners = {f"onnxruntime {k}": (_ort, p, k) for k, p in job["variants"].items()}
            runners.update({"openvino fp32": (_openvino, job["plain"], "fp32"),
                            "openvino int8": (_openvino, job["variants"]["int8"], "int8")})
            ready, cosines = {}, {}
            for name, (make, path, kind) in runners.items():
                key = f"{job['model']}|{threads}|{name}"
                try:
                    run = make(path, threads, feeds)
                    cosines[key] = _min_cosine(run(feeds), expected, feeds)
                except Exception as exc:  # noqa: BLE001 - an engine that cannot run this graph says why
                    results[key] = f"fails: {type(exc).__name__}: {str(exc)[:80]}"
                    continue
                ready[key] = run
            times = {key: [] for key in ready}
            for _ in range(repeats):  # alternating: each engine under the same load
                for key, run in ready.items():
                    times[key].append(_timed(run, feeds, seconds))
            results.update({key: [statistics.median(t), cosines[key]] for key, t in times.items()})
    print(json.dumps(results))


def report(jobs: list[dict], results: dict) -> None:
    print(f"\n{'model':<32}{'threads':>8}  {'engine':<18}{'ms':>9}  {'vs served':>9}  cosine")
    for job in jobs:
        for threads in (1, 2):
            served = results.get(f"{job['model']}|{threads}|onnxruntime {job['served']}")
            for engine in [f"onnxruntime {k}" for k in job["variants"]] + ["openvino fp32", "openvino int8"]:
                value = results.get(f"{job['model']}|{threads}|{engine}")
                if isinstance(value, list):
                    ratio = f"{served[0] / value[0]:.2f}x" if isinstance(served, list) else "-"
                    print(f"{job['model']:<32}{threads:>8}  {engine:<18}{value[0]:>9.2f}  {ratio:>9}  {value[1]:.4f}")
                else:
                    print(f"{job['model']:<32}{threads:>8}  {engine:<18}  {value}")
    print("\n(vs served: the time of the variant hubserve serves over this one's, above 1.00x is faster; cosine: the "
          "least, per token or row, to ONNX Runtime on the plain graph, where the gate asks 0.9999 of float32 and "
          "0.99 of int8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window of each engine per repeat")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.repeats, args.seconds)
    os.chdir(ROOT)  # the config's relative paths
    subprocess.run(["make", "-s", "setup"], check=True)  # the exports make serve serves, and their choices
    python = openvino_python()
    with tempfile.TemporaryDirectory(prefix="hubserve-engines-") as tmp:
        jobs = graphs(Path(tmp))
        job_file = Path(tmp) / "jobs.json"
        job_file.write_text(json.dumps(jobs))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([str(python), __file__, "--child", str(job_file), "--repeats", str(args.repeats),
                               "--seconds", str(args.seconds)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        report(jobs, json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
