"""Torch vs hybrid-attached ONNX Runtime generation on the CPU, one thread each (not a test).

    python -m bench.onnx_generation [--runs 3] [--tokens 32] [--export-dir /tmp/hubserve-onnx-bench]

SmolLM2-135M-Instruct (causal-lm): greedy generation of ``--tokens`` new tokens from a
~20-token prompt; whisper-tiny.en (speech-seq2seq): transcription of a few seconds of
espeak-ng speech (a sine sweep when espeak-ng is missing). Prints the median seconds of
``--runs`` runs for torch (``torch.set_num_threads(1)``) and for the attached model
(ONNX Runtime, one intra/inter-op thread, no spinning), their ratio, and whether the
generated ids are identical. Exports are float32 and kept in ``--export-dir``.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LM = ROOT / "data/models/HuggingFaceTB/SmolLM2-135M-Instruct"
WHISPER = ROOT / "data/models/openai/whisper-tiny.en"
PROMPT = "The sea was calm that morning, and the old fisherman pushed his small boat into the water and"
SPEECH = "The quick brown fox jumps over the lazy dog. Paris is the capital of France."


def sessions(module, folder: Path) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return {name: ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
            for name in module.GRAPHS}


def attached(module, model, folder: Path):
    if not all((folder / name).exists() for name in module.GRAPHS):
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        module.export(model, folder)
        print(f"  exported to {folder} in {time.perf_counter() - start:.1f}s")
    copy_ = copy.deepcopy(model)
    module.attach(copy_, sessions(module, folder))
    return copy_


def median_seconds(run, runs: int):
    """Median wall and CPU (this process) seconds of ``runs`` calls, and the last output."""
    walls, cpus, out = [], [], None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), out


def compare(name: str, torch_run, onnx_run, runs: int) -> float:
    import torch

    torch_s, torch_cpu, expected = median_seconds(torch_run, runs)
    onnx_s, onnx_cpu, got = median_seconds(onnx_run, runs)
    same = torch.equal(expected, got)
    print(f"{name}: wall torch {torch_s:.3f}s onnx {onnx_s:.3f}s (torch/onnx {torch_s / onnx_s:.2f}x); "
          f"cpu torch {torch_cpu:.3f}s onnx {onnx_cpu:.3f}s (torch/onnx {torch_cpu / onnx_cpu:.2f}x); "
          f"identical ids: {same} ({got.shape[-1]} ids)")
    if os.getloadavg()[0] > os.cpu_count():
        print(f"  note: load average {os.getloadavg()[0]:.0f} on {os.cpu_count()} cores: wall times are contended")
    return torch_s / onnx_s


def bench_lm(export_dir: Path, runs: int, tokens: int) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deployments.backends import onnx_decoder

    tokenizer = AutoTokenizer.from_pretrained(LM)
    model = AutoModelForCausalLM.from_pretrained(LM, dtype="float32").eval()
    onnx_model = attached(onnx_decoder, model, export_dir / "smollm2")
    prompt = tokenizer(PROMPT, return_tensors="pt")
    inputs = {"input_ids": prompt["input_ids"], "attention_mask": prompt["attention_mask"]}
    print(f"  prompt: {inputs['input_ids'].shape[1]} tokens, {tokens} new tokens")
    kwargs = dict(do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens)
    return compare("SmolLM2-135M-Instruct", lambda: model.generate(**inputs, **kwargs),
                   lambda: onnx_model.generate(**inputs, **kwargs), runs)


def speech() -> np.ndarray:
    """A few seconds of 16 kHz mono audio."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        if shutil.which("espeak-ng"):
            subprocess.run(["espeak-ng", "-w", str(path), SPEECH], check=True, capture_output=True)
            with wave.open(str(path)) as wav:
                rate = wav.getframerate()
                audio = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.float32) / 32768
            positions = np.arange(0, len(audio), rate / 16000)
            return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
    t = np.arange(4 * 16000) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t)).astype(np.float32)


def bench_whisper(export_dir: Path, runs: int) -> float:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from deployments.backends import onnx_encdec

    processor = WhisperProcessor.from_pretrained(WHISPER)
    model = WhisperForConditionalGeneration.from_pretrained(WHISPER, dtype="float32").eval()
    onnx_model = attached(onnx_encdec, model, export_dir / "whisper-tiny.en")
    audio = speech()
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    print(f"  audio: {len(audio) / 16000:.1f}s")
    ratio = compare("whisper-tiny.en", lambda: model.generate(features), lambda: onnx_model.generate(features), runs)
    print("  transcript:", processor.batch_decode(onnx_model.generate(features), skip_special_tokens=True)[0])
    return ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--export-dir", type=Path, default=Path(tempfile.gettempdir()) / "hubserve-onnx-bench")
    parser.add_argument("--only", choices=["lm", "whisper"])
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    ratios = {}
    if args.only in (None, "lm"):
        ratios["causal-lm SmolLM2-135M"] = bench_lm(args.export_dir, args.runs, args.tokens)
    if args.only in (None, "whisper"):
        ratios["speech-seq2seq whisper-tiny.en"] = bench_whisper(args.export_dir, args.runs)
    for name, ratio in ratios.items():
        print(f"{name}: onnx is {ratio:.2f}x the speed of torch")


if __name__ == "__main__":
    main()
