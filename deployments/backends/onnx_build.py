"""Makes one ONNX export and holds it to the fidelity gate (a child process of a replica).

    python -m deployments.backends.onnx_build MODEL ENTRY AUTO_CLASS FAMILY HEAD THREADS

loads the model with transformers on torch (float32, eager attention, no remote code),
writes the float32 graphs of its family (``onnx_export.FAMILIES``) with ``torch.onnx.export``,
optimizes encoders with ONNX Runtime's transformer optimizer where it knows the architecture,
quantizes every graph dynamically to int8 (MatMul weights, per channel), then runs torch and
each variant on the family's sample inputs and keeps the figures of ``fidelity``, each
variant's latency, and the fastest variant that passed (``choice``) in the entry's manifest.
A variant that fails the gate is kept out of ``choice``; an exporter that raises exits 1 with
the reason on its last line of stderr.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

from . import fidelity
from .onnx_export import FAMILIES, MANIFEST, VARIANTS, ensure_export, graph_file, open_sessions

logger = logging.getLogger(__name__)

#: ONNX Runtime's transformer optimizer, by model type: the fusions it knows (attention,
#: skip layer norm, GELU) for BERT-like encoders.
OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
                   "camembert": "bert", "electra": "bert", "mpnet": "bert", "albert": "bert", "vit": "vit"}

#: How much faster than float32 the int8 variant must be for ``auto`` to serve it.
INT8_MIN_SPEEDUP = 1.15


def family(name: str):
    """The graph module of a family (``onnx_export.FAMILIES``)."""
    return importlib.import_module(f"{__package__}.{FAMILIES[name]}")


def load_reference(source: Path, auto_class: str):
    import torch
    import transformers

    cls = getattr(transformers, auto_class)
    model = cls.from_pretrained(source, trust_remote_code=False, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def optimize(folder: Path, graph: str, model_type: str, config) -> bool:
    """Fuses a BERT-like encoder's graph in place; False where the optimizer does not apply."""
    kind = OPTIMIZER_TYPES.get(model_type)
    if kind is None:
        return False
    from onnxruntime.transformers import optimizer

    path = folder / graph
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    optimized = optimizer.optimize_model(str(path), model_type=kind, num_heads=heads, hidden_size=hidden,
                                         opt_level=1, use_gpu=False)
    optimized.save_model_to_file(str(path))
    return True


def quantize(folder: Path, graph: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(folder / graph), str(folder / graph_file(graph, "int8")), op_types_to_quantize=["MatMul"],
                     per_channel=True, weight_type=QuantType.QInt8)


def _numpy_outputs(output) -> dict:
    import torch

    return {k: v.detach().float().numpy() for k, v in output.items() if isinstance(v, torch.Tensor)}


def _logits_axes(outputs: dict, head: str) -> dict:
    axis = 1 if head == "semantic-segmentation" else -1
    return {name: axis for name in outputs if "logits" in name}


def _generate(model, sample: dict) -> list[list[int]]:
    # greedy whatever the model's own generation defaults say (they are bounded where it serves)
    out = model.generate(**sample, do_sample=False, num_beams=1, num_return_sequences=1,
                         max_new_tokens=fidelity.GATE_NEW_TOKENS, min_new_tokens=None, max_length=None)
    sequences = out if not hasattr(out, "sequences") else out.sequences
    skip = 0 if model.config.is_encoder_decoder else sample["input_ids"].shape[1]
    return [row[skip:].tolist() for row in sequences]


def _timed(run) -> tuple[object, float]:
    times, result = [], None
    for _ in range(3):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times) * 1000


def gate(reference, candidate, samples: list, variant: str, head: str, generative: bool) -> dict:
    """The fidelity figures of ``candidate`` (an attached copy) against ``reference`` on ``samples``."""
    import torch

    results = []
    with torch.inference_mode():
        for sample in samples:
            if generative:
                results.append(fidelity.compare_generations(_generate(reference, sample),
                                                            _generate(candidate, sample), variant))
            else:
                ref = _numpy_outputs(reference(**sample, return_dict=True))
                cand = _numpy_outputs(candidate(**sample, return_dict=True))
                mask = sample.get("attention_mask") if "input_ids" in sample else None
                results.append(fidelity.compare_outputs(ref, cand, variant, _logits_axes(ref, head),
                                                        None if mask is None else mask.numpy()))
    merged: dict = {"passed": all(r["passed"] for r in results),
                    "reason": "; ".join(r["reason"] for r in results if r["reason"])}
    for key in ("min_cosine", "agreement"):
        if key in results[0]:
            merged[key] = min(r[key] for r in results)
    for key in ("max_abs", "argmax_disagreements"):
        if key in results[0]:
            merged[key] = max(r[key] for r in results)
    return merged


def latency(model, sample: dict, generative: bool) -> float:
    import torch

    with torch.inference_mode():
        run = (lambda: _generate(model, sample)) if generative else (lambda: model(**sample))
        run()  # warm-up
        return round(_timed(run)[1], 3)


def build(source: Path, folder: Path, auto_class: str, family_name: str, head: str, threads: int) -> None:
    """Writes the graphs, their int8 copies and the manifest of one export into ``folder``."""
    import torch

    torch.set_num_threads(threads)
    graphs = family(family_name)
    generative = family_name != "encoder"
    reference = load_reference(source, auto_class)
    graphs.export(reference, folder)
    model_type = getattr(reference.config, "model_type", "")
    for graph in graphs.GRAPHS:  # from the plain graphs: the quantizer cannot type fused operators
        quantize(folder, graph)
    optimized = [g for g in graphs.GRAPHS if not generative and optimize(folder, g, model_type, reference.config)]
    samples = graphs.gate_inputs(reference)
    variants = {}
    for variant in VARIANTS:
        candidate = copy.deepcopy(reference)
        try:
            graphs.attach(candidate, open_sessions(folder, graphs.GRAPHS, variant, threads))
            figures = gate(reference, candidate, samples, variant, head, generative)
            figures["latency_ms"] = latency(candidate, samples[0], generative)
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run does not serve
            figures = {"passed": False, "reason": f"{type(exc).__name__}: {exc}"[:500]}
        variants[variant] = figures
        logger.info("%s %s: %s", source.name, variant, figures)
    passing = [v for v in VARIANTS if variants[v]["passed"]]
    choice = passing[0] if passing else None
    if passing == ["fp32", "int8"] and variants["int8"]["latency_ms"] * INT8_MIN_SPEEDUP > variants["fp32"]["latency_ms"]:
        choice = "fp32"  # int8 serves only where it is clearly faster: it is the less exact one
    elif len(passing) == 2:
        choice = "int8"
    reason = "" if passing else "; ".join(f"{v}: {variants[v]['reason']}" for v in VARIANTS)
    manifest = {"family": family_name, "graphs": list(graphs.GRAPHS), "optimized": optimized,
                "variants": variants, "choice": choice, "reason": reason,
                "torch_latency_ms": latency(reference, samples[0], generative)}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def main(argv=None) -> int:
    """The export command: builds ``ENTRY`` from ``MODEL`` unless it is complete."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 6 or args[3] not in FAMILIES or not args[5].isdigit():
        print("usage: python -m deployments.backends.onnx_build MODEL ENTRY AUTO_CLASS FAMILY HEAD THREADS",
              file=sys.stderr)
        return 2
    source, entry, auto_class, family_name, head, threads = Path(args[0]), Path(args[1]), *args[2:5], int(args[5])
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")  # the tracer's notes on constant branches; the gate judges the graphs
    try:
        ensure_export(entry, lambda folder: build(source, folder, auto_class, family_name, head, threads))
    except Exception as exc:  # noqa: BLE001 - the parent reports the last line
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
